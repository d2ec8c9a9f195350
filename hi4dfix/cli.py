"""The ``hi4dfix`` command: one-time setup and checks around the Snakemake workflow.

    hi4dfix install-profile [--force]    link profiles/slurm as the Snakemake profile "slurm"
    hi4dfix versions                     study versions, their splits and which targets exist
    hi4dfix check-data ROOT [--decode]   validate a Hi4D tree, listing every problem (exit 1 on errors)
    hi4dfix fetch-weights [--dry-run]    download the pretrained weights the config needs (where the internet is)
    hi4dfix provenance check results/v0  re-hash what a version's provenance.json lists (exit 1 on a mismatch)

Subcommands live in ``SUBCOMMANDS`` (name -> ``Subcommand``); adding one is adding an entry with a
function that declares its arguments and a function that runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE_SOURCE = REPO / "profiles" / "slurm"


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- install-profile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallProfileConfig:
    """Where the profile comes from and under which name Snakemake will find it."""

    source: Path = DEFAULT_PROFILE_SOURCE
    name: str = "slurm"
    # Snakemake's per-user profile folder; None: the one Snakemake itself searches
    # ($XDG_CONFIG_HOME/snakemake, else ~/.config/snakemake on Linux).
    profiles_dir: Path | None = None
    force: bool = False


@dataclass(frozen=True)
class InstallResult:
    target: Path
    source: Path
    changed: bool  # False: the same link was already there
    moved_aside: Path | None  # where a different profile was moved with --force


def snakemake_profiles_dir() -> Path:
    """The per-user folder in which ``snakemake --profile NAME`` looks for NAME.

    Asked of platformdirs exactly as Snakemake asks it, so both agree: $XDG_CONFIG_HOME/snakemake
    when that variable is set, else ~/.config/snakemake (on Linux).
    """
    import platformdirs

    return Path(platformdirs.user_config_dir("snakemake", "snakemake"))


def _points_to(link: Path, source: Path) -> bool:
    return link.is_symlink() and link.resolve() == source.resolve()


def install_profile(config: InstallProfileConfig) -> InstallResult:
    """Link ``config.source`` as ``<profiles_dir>/<name>``; refuse to replace another without force."""
    source = config.source.expanduser().resolve()
    if not (source / "config.yaml").is_file():
        raise CliError(f"profile source {source} has no config.yaml")
    if not config.name or "/" in config.name or config.name in (".", ".."):
        raise CliError(f"invalid profile name {config.name!r}: it must be a plain folder name")
    profiles_dir = config.profiles_dir if config.profiles_dir is not None else snakemake_profiles_dir()
    target = profiles_dir.expanduser() / config.name

    if _points_to(target, source):
        return InstallResult(target=target, source=source, changed=False, moved_aside=None)

    moved_aside = None
    if target.exists() or target.is_symlink():
        if not config.force:
            what = f"a link to {os.readlink(target)}" if target.is_symlink() else "a different profile"
            raise CliError(
                f"{target} already exists ({what}); rerun with --force to move it aside and link {source} instead"
            )
        # moved, not deleted: a hand-made site profile may be in there
        moved_aside = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        target.rename(moved_aside)

    target.parent.mkdir(parents=True, exist_ok=True)
    # create the link under a temporary name and rename it into place, so the profile is never
    # half-installed
    tmp_link = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(source, target_is_directory=True)
    os.replace(tmp_link, target)
    return InstallResult(target=target, source=source, changed=True, moved_aside=moved_aside)


def _install_profile_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = InstallProfileConfig()
    parser.add_argument(
        "--source",
        type=Path,
        default=defaults.source,
        help="profile folder to link (default: %(default)s)",
    )
    parser.add_argument(
        "--name",
        default=defaults.name,
        help="profile name, as in `snakemake --profile NAME` (default: %(default)s)",
    )
    parser.add_argument(
        "--profiles-dir",
        type=Path,
        default=None,
        help="Snakemake's user profile folder (default: $XDG_CONFIG_HOME/snakemake or ~/.config/snakemake)",
    )
    parser.add_argument("--force", action="store_true", help="move an existing, different profile of that name aside")


def _run_install_profile(args: argparse.Namespace) -> int:
    result = install_profile(
        InstallProfileConfig(source=args.source, name=args.name, profiles_dir=args.profiles_dir, force=args.force)
    )
    if result.moved_aside is not None:
        print(f"moved the previous {result.target} to {result.moved_aside}")
    state = "linked" if result.changed else "already linked"
    print(f"{state}: {result.target} -> {result.source}")
    print(f"run from the repository root: snakemake --profile {args.name} results/v0/deltas.csv")
    return 0


# ---- command line ------------------------------------------------------------------------------

# ---- versions and check-data ---------------------------------------------------------------------


def _load_plan(config_path: Path):
    """The plan of a full study config, for check-data (an overlay is refused: it has no study)."""
    if not config_path.is_file():
        raise CliError(f"{config_path}: no such config file")
    config = _read_config_file(config_path)
    missing = [key for key in STUDY_KEYS if key not in config]
    if missing:
        raise CliError(
            f"{config_path}: not a full study config (no {', '.join(missing)}); an overlay such as config/hi4d.yaml "
            "only changes some keys: pass the full config (config/config.yaml), or merge the overlay into a copy "
            "of it and pass that"
        )
    return load_workflow_plan(config_path, [])


STUDY_KEYS = ("data", "policy", "render_profiles", "versions")  # the blocks a Study is built from


def _versions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="study config")
    parser.add_argument(
        "--configfile", type=Path, nargs="+", action="extend", default=[],
        help="config files merged over --config, as snakemake's --configfile (e.g. config/ablations.yaml)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where results/ lives")


def _run_versions(args: argparse.Namespace) -> int:
    from hi4dfix.status import format_version_statuses, grid_listings, version_statuses

    plan = load_workflow_plan(args.config, args.configfile)
    print(format_version_statuses(version_statuses(plan, args.workdir), grid_listings(plan.config)))
    return 0


def _check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root",
        type=Path,
        nargs="+",
        help="Hi4D root (holding pairNN/actionNN folders) or one sequence; given two or more, also report "
        "sequences of one tree that are (near-)copies of another's (decodes every image)",
    )
    parser.add_argument("--config", type=Path, help="also require every scene of this study config")
    parser.add_argument(
        "--decode",
        action="store_true",
        help="decode every image and mask, not only their headers (slow; finds truncated files)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="threads opening and decoding files (default: the CPU count, %(default)s)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run_check_data(args: argparse.Namespace) -> int:
    from hi4dfix.hi4d.reader import ReadConfig
    from hi4dfix.status import check_tree, cross_tree_copies

    expected = _load_plan(args.config).sequence_dirs if args.config else ()
    problems = {}
    for root in args.root:
        problems.update(check_tree(root, expected, ReadConfig(decode_images=args.decode, workers=args.workers)))
    errors = 0
    for sequence, found in problems.items():
        errors += sum(problem.severity == "error" for problem in found)
        print(f"{sequence}: {'ok' if not found else f'{len(found)} problem(s)'}")
        for problem in found:
            print(f"  {problem}")
    if len(args.root) > 1:
        copies = cross_tree_copies(args.root, args.workers)
        errors += len(copies)
        print(f"across the {len(args.root)} trees: {len(copies) or 'no'} (near-)duplicate sequence pair(s)")
        for copy in copies:
            print(f"  {copy}")
    print(f"{len(problems)} sequence(s), {errors} error(s)")
    return 1 if errors else 0


# ---- fetch-weights --------------------------------------------------------------------------------


def _merged_config(base: Path, configfiles: list[Path]) -> dict:
    """``base``, then each ``--configfile`` merged over it in order (Snakemake's own merge)."""
    from snakemake.utils import update_config

    config: dict = {}
    for path in [base, *configfiles]:
        if not path.is_file():
            raise CliError(f"{path}: no such config file")
        update_config(config, _read_config_file(path))
    return config


def _read_config_file(path: Path) -> dict:
    """A config file's content, read strictly (invalid UTF-8 and duplicate keys named: hi4dfix.config_files)."""
    from hi4dfix.config_files import ConfigFileError, read_config_file

    try:
        return read_config_file(path) or {}
    except ConfigFileError as error:
        raise CliError(str(error)) from None


def load_workflow_config(base: Path, configfiles: list[Path]) -> dict:
    """The config as the workflow sees it (hi4dfix.plan.load_config, as the Snakefile): grids expanded,
    checked against the schema and completed with its defaults."""
    return _load(base, configfiles, build_plan=False)


def load_workflow_plan(base: Path, configfiles: list[Path]):
    """The study's plan (hi4dfix.plan) as the workflow builds it from the same config files."""
    return _load(base, configfiles, build_plan=True)


def _load(base: Path, configfiles: list[Path], build_plan: bool):
    from hi4dfix import plan

    config = _merged_config(base, configfiles)
    try:  # a GridError, ConfigError, PolicyError or PlanError: each names the key
        if build_plan:
            return plan.load(config, REPO)
        plan.load_config(config, REPO)
        return config
    except ValueError as error:
        raise CliError(f"{' + '.join(map(str, [base, *configfiles]))}: {error}") from None


def _fetch_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("config/config.yaml"), help="study config (default: %(default)s)"
    )
    parser.add_argument(
        "--configfile", type=Path, nargs="+", action="extend", default=[],
        help="config files merged over --config, as snakemake's --configfile",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="list each item, its size and destination; fetch nothing"
    )


def _run_fetch_weights(args: argparse.Namespace) -> int:
    from hi4dfix import weights

    items = weights.wanted_weights(load_workflow_config(args.config, args.configfile))
    present = {item: weights.is_present(item) for item in items}  # an extra arm's Hub file: its own item
    for item in items:
        if present[item]:
            state, size = "present", weights.format_size(weights.local_size(item))
        else:  # the download's own progress shows the size; a dry run asks for it
            state, size = "missing", weights.format_size(weights.remote_size(item)) if args.dry_run else ""
        source = item.source + "".join(f":{name}" for name in item.files)
        print(f"{state:8} {size:>10}  {item.name} [{source}] -> {item.destination}")
        print(f"{'':20}needed by {', '.join(item.needed_by)}")
    todo = [item for item in items if not present[item]]
    if args.dry_run or not todo:
        print(f"{len(todo)} of {len(items)} item(s) to fetch" + (" (dry run)" if args.dry_run and todo else ""))
        return 0
    failed = []
    for item in todo:
        print(f"fetching {item.name} [{item.source}] into {item.destination}", flush=True)
        try:
            weights.fetch(item)
        except Exception as error:  # network, authentication, disk: report and go on with the others
            failed.append(f"{item.describe()}: {error}")
            continue
        if not weights.is_present(item):
            failed.append(f"{item.describe()}: downloaded, but the loaders' files are not all in {item.destination}")
    for message in failed:
        print(f"hi4dfix fetch-weights: error: {message}", file=sys.stderr)
    print(f"fetched {len(todo) - len(failed)} of {len(todo)} item(s)")
    return 1 if failed else 0


# ---- provenance ----------------------------------------------------------------------------------


def _provenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: hash the files again and compare")
    parser.add_argument(
        "version_dir", type=Path,
        help="a version's results folder (or its provenance.json), or a grid's (results/ablations/GRID)",
    )  # fmt: skip
    parser.add_argument(
        "--root", type=Path, default=Path("."),
        help="the workflow's working directory, which the recorded paths are relative to (default: here)",
    )  # fmt: skip


def _run_provenance(args: argparse.Namespace) -> int:
    from hi4dfix.plan import Paths
    from hi4dfix.provenance import PROVENANCE_NAME, ProvenanceError, check_grid, check_provenance, read_provenance

    # a grid's folder, results/ablations/GRID, holds compare.csv (plan.Paths.compare) and no record
    compare_csv = Path(Paths(str(args.version_dir.parent.parent)).compare(args.version_dir.name))
    if compare_csv.is_file() and not (args.version_dir / PROVENANCE_NAME).exists():
        problems = check_grid(compare_csv, args.root)
        for problem in problems:
            print(f"  {problem}")
        print(f"{compare_csv}: {'recomputed and every version verified' if not problems else 'does not match'}")
        return 1 if problems else 0
    try:
        path, record = read_provenance(args.version_dir)
        notes: list[str] = []
        problems = check_provenance(path, args.root, notes)
    except ProvenanceError as error:
        raise CliError(str(error)) from None
    files = sum(len(arm["files"]) for arm in record.get("predictions", {}).values())
    for note in notes:
        print(f"{path}: {note}")
    if problems:
        print(f"{path}: {len(problems)} no longer match{'es' if len(problems) == 1 else ''}:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    if "tables" in record:  # a sealed record: what else was verified
        print(
            f"{path}: the record's own hash, {len(record.get('ground_truth', {}).get('files', {}))} ground-truth "
            f"files, {len(record['tables'])} tables, {len(record.get('stamps', {}))} stamps match; "
            f"tables recomputed from the per-view CSVs: {', '.join(record.get('recompute', {})) or 'none'}"
        )
    print(f"{path}: weights, {len(record.get('scenes', {}))} scene fingerprints and {files} prediction files match")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "versions": Subcommand(
        help="list the study versions, their splits and which of their targets exist",
        add_arguments=_versions_arguments,
        run=_run_versions,
    ),
    "check-data": Subcommand(
        help="validate a Hi4D tree before a run, listing every problem at once (exit 1 on errors)",
        add_arguments=_check_data_arguments,
        run=_run_check_data,
    ),
    "fetch-weights": Subcommand(
        help="download the pretrained weights the config needs into the caches the jobs read "
        "(run where the internet is; --dry-run lists them)",
        add_arguments=_fetch_weights_arguments,
        run=_run_fetch_weights,
    ),
    "provenance": Subcommand(
        help="check a version's provenance.json against the files on disk (exit 1 on a mismatch)",
        add_arguments=_provenance_arguments,
        run=_run_provenance,
    ),
    "power": Subcommand(
        help="scenes x frames needed for 80% power on the primary endpoint, from a finished version's CSVs",
        add_arguments=lambda parser: __import__("hi4dfix.power").power.add_arguments(parser),
        run=lambda args: __import__("hi4dfix.power").power.run(args),
    ),
    "install-profile": Subcommand(
        help="link the repository's Slurm profile into Snakemake's user profile folder (once per user)",
        add_arguments=_install_profile_arguments,
        run=_run_install_profile,
    ),
}


def build_parser(subcommands: Mapping[str, Subcommand] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hi4dfix", description="Setup and checks around the hi4dfix Snakemake workflow."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in subcommands.items():
        command_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except CliError as error:
        print(f"hi4dfix {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
