"""What a researcher asks before and after a run: which versions exist and how far they got,
and whether a Hi4D tree is complete. Pure functions behind the ``hi4dfix`` command."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from hi4dfix.hi4d.reader import Problem, ReadConfig, validate_sequence
from hi4dfix.study import block_eval_profile

if TYPE_CHECKING:
    from hi4dfix.plan import Plan


@dataclass(frozen=True)
class VersionStatus:
    name: str
    objective: str
    splits: Mapping[str, tuple[str, ...]]
    targets: Mapping[str, bool]  # target path -> exists
    parent: str | None = None
    changes: tuple[tuple[str, Any, Any], ...] = ()  # (setting, parent's value, this version's)


def version_targets(plan: Plan, name: str) -> list[str]:
    """What ``hi4dfix versions`` looks for: the triplets the version trains on (an earlier version's when
    their triplet inputs are alike: the plan's owner), its model, internal evaluation and delta table."""
    return [plan.triplets(name), plan.paths.model(name), plan.paths.eval_csv(name), plan.paths.deltas(name)]


def version_statuses(plan: Plan, workdir: str | Path = ".") -> list[VersionStatus]:
    """What each version is and has made, and what it changes from its parent (render-profile settings
    compared by content)."""
    statuses = []
    for name in plan.version_names:
        version = plan.unchecked_version(name)  # a listing: the jobs check the policy
        targets = {path: (Path(workdir) / path).exists() for path in version_targets(plan, name)}
        splits = {"difix_train": version.difix_train, "difix_eval": version.difix_eval, "nvs_eval": version.nvs_eval}
        changes = tuple(parent_changes(plan.config, name, version.extends)) if version.extends else ()
        statuses.append(VersionStatus(name, version.objective, splits, targets, version.extends, changes))
    return statuses


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


def format_version_statuses(statuses: Iterable[VersionStatus]) -> str:
    lines = []
    for status in statuses:
        lines.append(f"{status.name}: {status.objective.strip()}")
        if status.parent:
            changing = ", changing:" if status.changes else " (same settings)"
            lines.append(f"  extends {status.parent}{changing}")
            lines += [f"    {path}: {theirs!r} -> {mine!r}" for path, theirs, mine in status.changes]
        for split, scenes in status.splits.items():
            lines.append(f"  {split:<11} {', '.join(scenes)}")
        for target, exists in status.targets.items():
            lines.append(f"  [{'x' if exists else ' '}] {target}")
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
