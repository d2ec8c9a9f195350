"""What a researcher asks before and after a run: which versions exist and how far they got,
and whether a Hi4D tree is complete. Pure functions behind the ``hi4dfix`` command."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from hi4dfix.hi4d.reader import Problem, ReadConfig, validate_sequence
from hi4dfix.study import block_eval_profile

if TYPE_CHECKING:
    from hi4dfix.plan import Plan
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class VersionStatus:
    name: str
    objective: str
    splits: Mapping[str, tuple[str, ...]]
    targets: Mapping[str, bool]  # target path -> exists
    parent: str | None = None
    changes: tuple[tuple[str, Any, Any], ...] = ()  # (setting, parent's value, this version's)
    made_as: Mapping[str, str] = field(default_factory=dict)  # target -> the shared file that stands for it


@dataclass(frozen=True)
class GridVariant:
    label: str  # GRID.LABELS
    version: str  # the version that runs it: the label, or the parent's name when its settings are the parent's

    @property
    def same_as_parent(self) -> bool:
        return self.version != self.label


@dataclass(frozen=True)
class GridListing:
    name: str
    parent: str
    description: str
    variants: tuple[GridVariant, ...]


def version_targets(plan: Plan, name: str) -> list[str]:
    """What ``hi4dfix versions`` looks for: the version's expected outputs, as its card lists them, else its
    triplets, model, internal evaluation and delta tables."""
    paths = plan.paths
    expected = plan.unchecked_version(name).expected_outputs
    return list(expected) or [
        paths.triplets(name), paths.model(name), paths.eval_csv(name), paths.eval_deltas(name), paths.deltas(name),
    ]  # fmt: skip


def version_statuses(plan: Plan, workdir: str | Path = ".") -> list[VersionStatus]:
    """What each version is and has made, and what it changes from its parent (render-profile settings
    compared by content). A version whose triplet inputs are an earlier version's trains on that one's
    triplets (the plan's owner): its triplets are looked for where they are made."""
    statuses = []
    for name in plan.version_names:
        version = plan.unchecked_version(name)  # a listing: the jobs check the policy
        paths, own, made = version_targets(plan, name), plan.paths.triplets(name), plan.triplets(name)
        made_as = {own: made} if own in paths and made != own else {}
        targets = {path: (Path(workdir) / made_as.get(path, path)).exists() for path in paths}
        splits = {"difix_train": version.difix_train, "difix_eval": version.difix_eval, "nvs_eval": version.nvs_eval}
        changes = tuple(parent_changes(plan.config, name, version.extends)) if version.extends else ()
        statuses.append(VersionStatus(name, version.objective, splits, targets, version.extends, changes, made_as))
    return statuses


def grid_listings(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> list[GridListing]:
    """Every variant of each ``ablations`` grid of an expanded config, in grid order, including those whose
    settings are the parent's (expansion makes no version of them: they *are* the parent)."""
    from hi4dfix.ablations import parse_axis
    from hi4dfix.config_schema import load_schema

    grids = config.get("ablations") or {}
    if not grids:
        return []
    schema = load_schema(schema_path)
    listings = []
    for grid, spec in grids.items():
        parent = spec["parent"]
        profile = config["versions"][parent]["render_profile"]
        axes = [parse_axis(grid, path, values, profile, schema) for path, values in spec["axes"].items()]
        labels = [".".join([grid, *combination]) for combination in itertools.product(*(a.labels for a in axes))]
        # expansion keeps every variant whose settings differ as a version of its label; the one left is the parent
        variants = tuple(GridVariant(label, label if label in config["versions"] else parent) for label in labels)
        listings.append(GridListing(grid, parent, str(spec.get("description", "")), variants))
    return listings


def parent_changes(config: Mapping[str, Any], name: str, parent: str) -> list[tuple[str, Any, Any]]:
    """The settings in which version ``name`` differs from ``parent``; its render profile by content."""
    from hi4dfix.ablations import DESCRIPTIVE_KEYS, differences

    def runs(version: str) -> dict[str, Any]:
        block = config["versions"][version]
        settings = {key: value for key, value in block.items() if key not in DESCRIPTIVE_KEYS}
        settings["render_profiles.*"] = config["render_profiles"][block["render_profile"]]
        settings["eval_render_profile"] = config["render_profiles"][block_eval_profile(block)]
        return settings

    return differences(runs(name), runs(parent))


def _status_lines(status: VersionStatus) -> list[str]:
    lines = [f"{status.name}: {status.objective.strip()}"]
    if status.parent:
        changing = ", changing:" if status.changes else " (same settings)"
        lines.append(f"  extends {status.parent}{changing}")
        lines += [f"    {path}: {theirs!r} -> {mine!r}" for path, theirs, mine in status.changes]
    for split, scenes in status.splits.items():
        lines.append(f"  {split:<11} {', '.join(scenes)}")
    lines.append("  expected outputs ([x]: exists):")
    for target, exists in status.targets.items():
        shared = f" (shared: made as {status.made_as[target]}, same triplet inputs)" if target in status.made_as else ""
        lines.append(f"  [{'x' if exists else ' '}] {target}{shared}")
    return lines


def format_version_statuses(statuses: Iterable[VersionStatus], grids: Sequence[GridListing] = ()) -> str:
    """The versions not in a grid, then each grid: a header with its count of variants, and every variant,
    the one with the parent's settings as a line naming the parent."""
    by_name = {status.name: status for status in statuses}
    in_grids = {variant.label for grid in grids for variant in grid.variants}
    lines = []
    for status in by_name.values():
        if status.name not in in_grids:
            lines += _status_lines(status)
    for grid in grids:
        same = [v for v in grid.variants if v.same_as_parent]
        of_own = len(grid.variants) - len(same)
        header = f"grid {grid.name}: {len(grid.variants)} variants of {grid.parent}"
        if same:
            header += f" ({of_own} versions of their own; {', '.join(v.label for v in same)} = {grid.parent})"
        lines += ["", header + (f": {grid.description}" if grid.description else "")]
        for variant in grid.variants:
            if variant.same_as_parent:
                lines.append(
                    f"{variant.label}: identical to the parent {grid.parent} (the same settings: not a version of "
                    f"its own; its targets are {grid.parent}'s, listed above)"
                )
            else:
                lines += _status_lines(by_name[variant.label])
    return "\n".join(lines)


def find_sequences(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Folders under ``root`` that are (or look like) Hi4D sequences: they hold meta.npz, cameras/ or images/."""
    root = Path(root)
    markers = ("meta.npz", "cameras", "images")
    found = set()
    for depth in range(max_depth + 1):
        for marker in markers:
            found.update(path.parent for path in root.glob("/".join(["*"] * depth + [marker])))
    return sorted(found)


def check_tree(
    root: str | Path, expected: Iterable[str] = (), cfg: ReadConfig = ReadConfig()
) -> dict[Path, list[Problem]]:
    """Every problem of every sequence under ``root``, plus expected sequence folders that are missing.

    ``cfg.decode_images`` decodes every image and mask (``cfg.workers`` threads), which finds
    truncated files that a header read passes.
    """
    root = Path(root)
    if not root.is_dir():
        return {root: [Problem(root, "not a directory")]}
    problems = {sequence: validate_sequence(sequence, cfg) for sequence in find_sequences(root)}
    for folder in expected:
        if not (root / folder).is_dir():
            problems[root / folder] = [Problem(root / folder, "sequence folder named in the config is missing")]
    if not problems:
        problems[root] = [Problem(root, "no Hi4D sequence found (no meta.npz, cameras/ or images/ below it)")]
    return problems


def cross_tree_copies(roots: Sequence[str | Path], workers: int = 1) -> list[str]:
    """Sequences of one tree whose images are pixel-identical to, or near-copies of, a sequence's
    of another tree (hi4dfix.fingerprint), one line per pair; unreadable sequences are skipped
    (check_tree reports them)."""
    from hi4dfix.fingerprint import compare_fingerprints, fingerprint_sequence

    prints: list[tuple[int, dict]] = []
    for index, root in enumerate(roots):
        for sequence in find_sequences(root):
            try:
                prints.append((index, fingerprint_sequence(sequence, workers)))
            except (OSError, ValueError):
                continue
    lines = []
    for (tree_a, a), (tree_b, b) in itertools.combinations(prints, 2):
        if tree_a == tree_b:
            continue
        matches = compare_fingerprints(a, b)
        if matches:
            exact = sum(m.kind == "pixel-identical" for m in matches)
            lines.append(
                f"{a['scene']} and {b['scene']}: {len(matches)} of {len(a['images'])} images alike "
                f"({exact} pixel-identical, {len(matches) - exact} near-copies), e.g. {matches[0]}"
            )
    return lines
