"""The plan of the study, built once from the validated config: what the workflow makes, where, by
whom and with what. Pure Python (no Snakemake): the Snakefile's ``common.smk`` is glue over it, and
the ``hi4dfix`` commands (status, provenance) take their paths from it.

* :func:`load_config`: the one way to load a config: grids expanded (:mod:`hi4dfix.ablations`),
  checked against the schema with one line per problem (:mod:`hi4dfix.config_schema`), and the
  schema's defaults filled in, as Snakemake's ``validate`` does.
* :class:`Paths`: every output path (pattern) of the workflow, each spelled once; called with
  wildcard patterns (``"{version}"``) it gives a rule's output, with names a file.
* :class:`Plan`: the study's versions, reachable only through the reserved-scene policy check
  (:meth:`Plan.version`); the owners of shared work (a grid variant reads an earlier version's
  triplets, raw/base/control arms and control model when they depend on the same settings); the
  per-job resources (measured per-unit costs: :mod:`hi4dfix.resources`); the tuning command's
  arguments; the resolved version config of the provenance record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hi4dfix import resources, sources
from hi4dfix.ablations import Grid, canonical, expand_config
from hi4dfix.arms import CONTROL, study_arms
from hi4dfix.config_files import check_config_files
from hi4dfix.config_schema import check_config, fill_defaults, load_schema
from hi4dfix.difix import geometry
from hi4dfix.difix.control import (
    CONTROL_DIR,
    OOD_TRIPLETS_NAME,
    ControlDataConfig,
    check_control_triplets,
    check_fresh,
    control_triplets_path,
)
from hi4dfix.extra_arms import ExtraArmError, check_extra_arms, extra_arms, local_inputs, weights_spec
from hi4dfix.fingerprint import FINGERPRINT_FILE
from hi4dfix.hi4d.layout import HI4D_CAMERA_IDS
from hi4dfix.provenance import PROVENANCE_NAME
from hi4dfix.stamps import stamp_path
from hi4dfix.study import Study, Version
from hi4dfix.weights import preset_mismatch_message

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "workflow/schemas/config.schema.yaml"  # relative to the repository (the Snakefile's folder)
SHARED_ARMS = ("raw", "base")  # NVS arms that do not depend on the version's tuning
TUNED = "tuned"
MODEL = "model.pkl"  # a DiFix checkpoint, in each model's folder
TRAIN_LOG = "train_log.csv"
STUDY_BLOCKS = ("materialize", "difix", "metrics", "stats", "policy")  # study-wide blocks of a version's record


class PlanError(ValueError):
    """The config cannot make a plan; the message names the setting."""


# ---- the config ----------------------------------------------------------------------------------


def load_config(
    config: dict[str, Any],
    basedir: str | Path = REPO,
    shown_as: str = SCHEMA,
    config_files: Iterable[str | os.PathLike] = (),
) -> dict[str, Grid]:
    """Make ``config`` (merged already, as Snakemake merges ``--configfile``) the workflow's, in place:
    versions that inherit and ablation grids become plain versions (so that the schema and the policy
    check every version as it runs), the schema check (one line per problem, the failing key first),
    then the schema's defaults filled in. Returns the grids by name. ``config_files``: the files
    ``config`` was merged from, read again strictly first (a duplicate key, which Snakemake's loader
    drops silently, is refused: :mod:`hi4dfix.config_files`). Raises ``ConfigFileError``, ``GridError``
    or ``ConfigError`` (ValueErrors naming the file or key)."""
    check_config_files(config_files)
    schema_path = Path(basedir) / SCHEMA
    schema = load_schema(schema_path)
    grids = expand_config(config, schema)
    check_config(config, schema_path, shown_as=shown_as, schema=schema)
    fill_defaults(config, schema)  # as Snakemake's validate does
    from hi4dfix.metrics import check_disabled_metrics  # lazily, as below: scikit-image stays out of plain imports

    check_disabled_metrics(config)
    return grids


def sequence_index(sequence: str) -> dict[str, str]:
    """A Hi4D sequence folder's index files (the synthetic data rule writes them; materialize reads them)."""
    return {"meta": f"{sequence}/meta.npz", "cameras": f"{sequence}/cameras/rgb_cameras.npz"}


def one_of(names: Any) -> str:
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(name) for name in sorted(names))


def local_gpus(environ: Mapping[str, str] = os.environ, dev: str | Path = "/dev") -> int:
    """GPUs this machine shows the jobs, without importing torch: CUDA_VISIBLE_DEVICES when set
    (empty or -1: none), else the NVIDIA device files."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [item.strip() for item in visible.split(",") if item.strip()]
        return 0 if not ids or ids[0] == "-1" else len(ids)
    return sum(1 for path in Path(dev).glob("nvidia*") if re.fullmatch(r"nvidia\d+", path.name))


def owners(keys: Mapping[Any, str]) -> dict[Any, Any]:
    """For every name, the first name (in order) with the same key: who makes a shared output."""
    first: dict[str, Any] = {}
    return {name: first.setdefault(key, name) for name, key in keys.items()}


def version_seeds(name: str, tuning: Mapping[str, Any]) -> tuple[int, ...]:
    """A version's training seeds: ``tuning.seeds``, else ``(tuning.seed,)``. The first is ``tuning.seed``
    (its run is the version's model at the seedless paths, so one seed changes no path); a list that
    starts elsewhere is refused, naming the keys, rather than guessing which of the two is meant."""
    seed = int(tuning.get("seed", 0))
    seeds = tuning.get("seeds")
    if seeds is None:
        return (seed,)
    seeds = tuple(int(s) for s in seeds)
    if not seeds or seeds[0] != seed or len(set(seeds)) != len(seeds):
        raise PlanError(
            f"versions.{name}.tuning.seeds is {list(seeds)}: it must list distinct seeds starting with "
            f"versions.{name}.tuning.seed ({seed}), whose run is the version's model; set tuning.seed to the first"
        )
    return seeds


def replicate_tuning(tuning: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The tuning settings of one seed's run: the block with ``seed`` set and the seed list left out, so a
    run is keyed by what decides its weights (the first seed's equals the block of a one-seed version)."""
    return {**{key: value for key, value in tuning.items() if key != "seeds"}, "seed": seed}


def triplet_key(version: Version, profiles: Mapping[str, Mapping[str, Any]]) -> str:
    """What a version's triplets depend on: the render settings of its training and evaluation renders,
    its DiFix scenes and triplet settings."""
    return canonical(
        {
            "render_profile": profiles[version.render_profile],
            "eval_render_profile": profiles[version.eval_profile],
            "difix_train": list(version.difix_train),
            "difix_eval": list(version.difix_eval),
            "triplets": dict(version.triplets),
        }
    )


# ---- output paths ----------------------------------------------------------------------------------

CONTENT_CHECK_NAME = "content_check.json"  # a content check's record: a version's, the control triplets'


@dataclass(frozen=True)
class Paths:
    """Every output path of the workflow under ``results``: one method per kind of file. Arguments
    may be names or wildcard patterns (``"{version}"``)."""

    results: str = "results"

    def scene(self, scene: str) -> str:
        return f"{self.results}/scenes/{scene}"

    def render(self, profile: str, scene: str) -> str:
        return f"{self.results}/renders/{profile}/{scene}"

    def render_quality(self, profile: str, scene: str) -> str:
        """The raw renders' PSNR/SSIM at the source and held-out cameras (hi4dfix.render.quality)."""
        return f"{self.render(profile, scene)}.quality.csv"

    def content_check(self, version: str) -> str:
        return f"{self.results}/{version}/{CONTENT_CHECK_NAME}"

    def control_content_check(self) -> str:
        """The record that the control arm's triplets hold no reserved scene's frames (one per study)."""
        return f"{self.results}/{CONTROL_DIR}/{CONTENT_CHECK_NAME}"

    def triplets(self, version: str) -> str:
        """Where ``version`` writes triplets (who reads them: :meth:`Plan.triplets`)."""
        return f"{self.results}/{version}/triplets.json"

    def base_dir(self, preset: str) -> str:
        """The pretrained tiny base's folder (difix.base: pretrain)."""
        return f"{self.results}/difix_base/{preset}"

    def base_model(self, preset: str) -> str:
        return f"{self.base_dir(preset)}/{MODEL}"

    def ood_test(self, preset: str, ext: str = "csv") -> str:
        """The pretrained base against the raw renders of out-of-domain test scenes (per view; md: summary)."""
        return f"{self.base_dir(preset)}/ood_test.{ext}"

    def ood_triplets(self, preset: str) -> str:
        """The pretraining's own triplets (what the control arm continues on)."""
        return f"{self.base_dir(preset)}/{OOD_TRIPLETS_NAME}"

    def base_workdir(self, preset: str) -> str:
        return f"{self.base_dir(preset)}/work"

    def difix_dir(self, version: str, arm: str = TUNED, seed: int | str | None = None) -> str:
        """A tuning job's folder: the tuned arm's, or the control arm's inside it; a further training seed's
        run (``tuning.seeds`` after the first) in ``seed{seed}/`` inside that."""
        arm_dir = f"{self.results}/{version}/difix" + ("" if arm == TUNED else f"/{arm}")
        return arm_dir + ("" if seed is None else f"/seed{seed}")

    def model(self, version: str, arm: str = TUNED, seed: int | str | None = None) -> str:
        return f"{self.difix_dir(version, arm, seed)}/{MODEL}"

    def train_log(self, version: str, arm: str = TUNED, seed: int | str | None = None) -> str:
        return f"{self.difix_dir(version, arm, seed)}/{TRAIN_LOG}"

    def workdir(self, version: str, arm: str = TUNED, seed: int | str | None = None) -> str:
        """Checkpoints of a tuning job (a folder per fingerprint of data and settings), outside its outputs."""
        return f"{self.difix_dir(version, arm, seed)}/work"

    def eval_csv(self, version: str, seed: int | str | None = None) -> str:
        """The internal evaluation; of a further seed's tuned (and control) model: in its seed folder."""
        return f"{self.difix_dir(version, TUNED, seed)}/eval.csv"

    def eval_deltas(self, version: str, ext: str = "csv") -> str:
        return f"{self.difix_dir(version)}/eval_deltas.{ext}"

    def nvs_csv(self, version: str, arm: str, scene: str, seed: int | str | None = None) -> str:
        """Where ``version`` writes an arm's NVS metrics (who reads them: :meth:`Plan.nvs_csv`); a further
        training seed's in ``seed{seed}/``."""
        seed_dir = "" if seed is None else f"seed{seed}/"
        return f"{self.results}/{version}/nvs/{arm}/{seed_dir}{scene}.csv"

    def deltas(self, version: str, ext: str = "csv") -> str:
        return f"{self.results}/{version}/deltas.{ext}"

    def provenance(self, version: str) -> str:
        """The sealed record (the delta_table job writes it after the tables: it hashes them)."""
        return f"{self.results}/{version}/{PROVENANCE_NAME}"

    def provenance_inputs(self, version: str) -> str:
        """The record of what went into the tables (rule provenance; the version card shows it)."""
        return f"{self.results}/{version}/provenance_inputs.json"

    @staticmethod
    def stamp(output: str) -> str:
        """The compute-time stamp of ``output`` (:mod:`hi4dfix.stamps`), beside it."""
        return stamp_path(output)

    def report(self, version: str, name: str) -> str:
        """A report item of the version (the methods below name each)."""
        return f"{self.results}/{version}/report/{name}"

    def report_html(self, version: str) -> str:
        """Where the README's ``snakemake --report`` writes a version's report."""
        return f"{self.results}/{version}/report.html"

    def card(self, version: str) -> str:
        return self.report(version, "card.html")

    def metric_charts(self, version: str) -> str:
        return self.report(version, "metrics.png")

    def before_after(self, version: str, scene: str) -> str:
        return self.report(version, f"before_after/{scene}.png")

    def gallery(self, version: str) -> str:
        return self.report(version, "gallery.png")

    def loss_curve(self, version: str) -> str:
        return self.report(version, "train_loss.png")

    def versions_table(self) -> str:
        return f"{self.results}/versions.csv"

    def grid_dir(self, grid: str) -> str:
        return f"{self.results}/ablations/{grid}"

    def compare(self, grid: str, ext: str = "csv") -> str:
        """Every variant of a grid against its parent (csv; md)."""
        return f"{self.grid_dir(grid)}/compare.{ext}"

    def paired_chart(self, grid: str) -> str:
        return f"{self.grid_dir(grid)}/paired.png"

    def decision(self, grid: str) -> str:
        return f"{self.grid_dir(grid)}/decision.html"

    def compile_cache(self) -> str:
        return f"{self.results}/compile_cache"

    def log(self, rule: str, *wildcards: str) -> str:
        return "/".join([f"{self.results}/logs/{rule}", *wildcards]) + ".log"

    def benchmark(self, rule: str, *wildcards: str) -> str:
        return "/".join([f"{self.results}/benchmarks/{rule}", *wildcards]) + ".tsv"


# ---- the plan --------------------------------------------------------------------------------------


@dataclass
class Plan:
    """The study as the workflow runs it. Build with :func:`load` (or :meth:`from_config` for a
    config that :func:`load_config` made)."""

    config: Mapping[str, Any]
    grids: Mapping[str, Grid] = field(default_factory=dict)
    gpus: int = 0  # GPUs of the machine that runs the jobs: rules ask for a GPU only when there is one
    paths: Paths = field(default_factory=Paths)
    _study: Study = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._study = Study.from_config(self.config, resolve_links=True)  # links under data.root followed
        mismatch = preset_mismatch_message(self.config)
        if mismatch is not None:
            raise PlanError(mismatch)  # a local difix.base of another preset: refused by name
        try:  # released fixers as arms (difix.extra_arms): a file, module or size a job would miss, refused now
            self.extra_arms = extra_arms(self.difix)
            check_extra_arms(self.extra_arms, self.difix["hub_cache_dir"])
        except ExtraArmError as exc:
            raise PlanError(str(exc)) from None
        self._checked: dict[str, Version] = {}
        self._sizes: dict[str, resources.SceneSize] = {}
        study = self._study
        versions = study.versions
        self.triplet_owner = owners({name: triplet_key(v, study.render_profiles) for name, v in versions.items()})
        self.arm_owner = owners({name: canonical(self._arm_key(v)) for name, v in versions.items()})
        # the control arm trains on out-of-domain data, not the version's triplets: its model depends on
        # the tuning settings and processing size alone, its NVS CSVs on those and the raw/base arms' settings
        self.seed_lists = {name: version_seeds(name, v.tuning) for name, v in versions.items()}
        slots = [(name, seed) for name, seeds in self.seed_lists.items() for seed in seeds]
        # per (version, seed): the control run of that seed, and its NVS CSVs (the first seed's: the
        # version's control arm); one seed keys them exactly as a version's tuning block did
        control_keys = {}
        for name, seed in slots:
            version = versions[name]
            tuning = replicate_tuning(version.tuning, seed)
            control_keys[name, seed] = canonical([tuning, self.training_geometry(version)])
        self.control_seed_owner = owners(control_keys)
        self.control_arm_seed_owner = owners(
            {
                (name, seed): canonical([*self._arm_key(versions[name]), list(self.control_seed_owner[name, seed])])
                for name, seed in slots
            }
        )
        first = {name: seeds[0] for name, seeds in self.seed_lists.items()}
        self.control_owner = {name: self.control_seed_owner[name, first[name]][0] for name in versions}
        self.control_arm_owner = {name: self.control_arm_seed_owner[name, first[name]][0] for name in versions}

    # -- the study, through the policy ---------------------------------------------------------

    @property
    def difix(self) -> Mapping[str, Any]:
        return self.config["difix"]

    @property
    def data(self) -> Mapping[str, Any]:
        return self.config["data"]

    @property
    def version_names(self) -> tuple[str, ...]:
        return tuple(self._study.versions)

    @property
    def scenes(self) -> tuple[str, ...]:
        return self._study.scenes

    @property
    def reserved_scenes(self) -> list[str]:
        return sorted(self._study.reserved_scenes)

    @property
    def render_profiles(self) -> Mapping[str, Mapping[str, Any]]:
        return self._study.render_profiles

    @property
    def sequence_dirs(self) -> tuple[str, ...]:
        return tuple(self._study.scene_dirs.values())

    def scene_for_sequence_dir(self, sequence_dir: str) -> str:
        return self._study.scene_for_sequence_dir(sequence_dir)

    @property
    def control_on(self) -> bool:
        """The control arm (difix.control): the base trained as long as `tuned`, on fresh out-of-domain data."""
        return bool(self.difix["control"]["enabled"])

    @property
    def arms(self) -> tuple[str, ...]:
        """raw, base, tuned, control when on, then the extra arms (difix.extra_arms) in config order."""
        return study_arms(self.control_on, tuple(self.extra_arms))

    def version(self, name: str) -> Version:
        """The version after the reserved-scene policy check: a refused version raises (every time)."""
        if name not in self._checked:
            self._checked[name] = self._study.check_version(name)
        return self._checked[name]

    def unchecked_version(self, name: str) -> Version:
        """The version as the config says, for listings (``hi4dfix versions``) only: not for jobs."""
        return self._study.version(name)

    def parents(self) -> dict[str, str | None]:
        return {name: version.extends for name, version in self._study.versions.items()}

    # -- sequences and scenes ----------------------------------------------------------------

    def sequence_path(self, scene: str) -> str:
        """The scene's Hi4D sequence folder (real or synthetic)."""
        return f"{self.data['root']}/{self._study.sequence_dir(scene)}"

    def sequence_index_files(self, scene: str) -> list[str]:
        """Raw inputs of one scene: touching them makes only that scene's jobs stale. Refuses a Hi4D
        sequence folder that is missing or empty (:meth:`check_sequence_folder`)."""
        self.check_sequence_folder(scene)
        return list(sequence_index(self.sequence_path(scene)).values())

    def resolved_sequence_path(self, scene: str) -> str:
        """The scene's sequence folder as the file system resolves it: symbolic links followed (as the policy
        compares folders), absolute. A param of materialize, so a data.root moved or re-pointed at another
        tree reruns the scenes whose folder changed, even when the files there look the same."""
        real_root = os.path.realpath(str(self.data["root"]))
        return os.path.normpath(os.path.join(real_root, self._study.resolved_dirs[scene]))

    def sequence_identity(self, scene: str) -> str:
        """Materialize's ``source_dir`` param: :meth:`resolved_sequence_path`, relative to the working
        directory (resolved) when inside it, so a study copied or moved with its data (the synthetic
        sequences under results/) stays up to date; a tree outside it (Hi4D) is named absolutely."""
        resolved, workdir = self.resolved_sequence_path(scene), os.path.realpath(os.getcwd())
        inside = os.path.commonpath([workdir, resolved]) == workdir
        return Path(os.path.relpath(resolved, workdir)).as_posix() if inside else resolved

    def check_sequence_folder(self, scene: str) -> None:
        """Refuse a missing or empty sequence folder of real data (data.source hi4d: no rule makes it), which
        Snakemake would otherwise pass over, keeping a scene materialized from another tree."""
        if self.data["source"] == "synthetic":
            return  # synthesize_sequence makes the folder
        folder, resolved = self.sequence_path(scene), self.resolved_sequence_path(scene)
        try:
            with os.scandir(folder) as entries:
                state = None if any(True for _ in entries) else "is empty"
        except FileNotFoundError:
            state = "does not exist"
        except NotADirectoryError:
            state = "is not a folder"
        if state is None:
            return
        shown = folder if os.path.abspath(folder) == resolved else f"{folder} (resolved: {resolved})"
        override = "data.scene_dirs" if scene in self.data.get("scene_dirs", {}) else "its default folder"
        raise PlanError(
            f"scene {scene}: its sequence folder {shown} {state}; data.root is {self.data['root']!r} and the "
            f"folder is {override} {self._study.sequence_dir(scene)!r} under it: point data.root (or "
            f"data.scene_dirs.{scene}) at the Hi4D tree that holds the sequence"
        )

    def reserved_sequence_paths(self) -> dict[str, str]:
        """Each reserved scene's sequence folder: the triplet writer refuses samples of their data."""
        return {scene: f"{self.data['root']}/{folder}" for scene, folder in self._study.reserved_dirs.items()}

    def source_state(self, scene: str) -> Any:
        """The scene's source images, masks and SMPL files by content (hi4dfix.sources says why a param)."""
        return sources.source_state(self.paths.scene(scene), self.sequence_path(scene))

    def scene_camera_ids(self, scene: str) -> list[int] | None:
        """The scene's camera ids at DAG build: Hi4D's for synthetic data, else rgb_cameras.npz (None when absent)."""
        if self.data["source"] == "synthetic":
            return list(HI4D_CAMERA_IDS)
        cameras = Path(self.sequence_path(scene)) / "cameras" / "rgb_cameras.npz"
        if not cameras.is_file():
            return None
        import numpy as np

        with np.load(cameras) as archive:
            return [int(cam) for cam in archive["ids"]]

    def check_triplet_cams(self, version: Version) -> None:
        """triplets.cams must name cameras every DiFix scene has (else its triplets would be silently empty)."""
        cams = version.triplets.get("cams")
        if not cams:
            return
        for scene in version.difix_scenes:
            known = self.scene_camera_ids(scene)
            unknown = sorted(set(cams) - set(known)) if known is not None else []
            if unknown:
                raise ValueError(
                    f"version {version.name}: triplets.cams names camera(s) {unknown} that scene {scene} does not "
                    f"have (its cameras: {', '.join(map(str, known))})"
                )

    # -- shared work: owners -------------------------------------------------------------------

    def _arm_key(self, version: Version) -> list[Any]:
        """What the raw and base NVS arms of a version depend on."""
        return [
            self.render_profiles[version.eval_profile],
            version.nvs,
            version.nvs_eval,
            geometry.inference_geometry(self.difix, version.tuning),
        ]

    def triplets(self, version: str) -> str:
        """The version's triplet JSON: made by the first version with the same triplet inputs."""
        return self.paths.triplets(self.triplet_owner[version])

    # -- training seeds (tuning.seeds) ------------------------------------------------------------

    def seeds(self, version: str) -> tuple[int, ...]:
        """The version's training seeds (:func:`version_seeds`): its tuned and control arms train once each."""
        return self.seed_lists[version]

    def seed_dir(self, version: str, seed: int | None) -> int | None:
        """The ``seed`` argument of :class:`Paths` for a run of ``version``: None (the seedless paths) for
        its first seed, else the seed."""
        return None if seed is None or seed == self.seed_lists[version][0] else seed

    def further_seeds(self, version: str) -> tuple[int, ...]:
        """The seeds after the first: each has its own tuning, control and evaluation jobs."""
        return self.seed_lists[version][1:]

    def seeded_arms(self) -> tuple[str, ...]:
        """The NVS arms that train, so have a run per seed."""
        return tuple(arm for arm in self.arms if arm not in SHARED_ARMS and arm not in self.extra_arms)

    def nvs_csv(self, version: str, arm: str, scene: str, seed: int | None = None) -> str:
        """An arm's per-scene NVS metrics; raw, base, the extra arms and control come from the first version
        sharing them (an extra arm's model is study-wide: its CSVs depend on what raw and base's do).
        ``seed``: a training seed of the version (default the first) for the arms that train."""
        if arm in SHARED_ARMS or arm in self.extra_arms:
            return self.paths.nvs_csv(self.arm_owner[version], arm, scene)
        if arm == CONTROL:
            owner, owner_seed = self.control_arm_seed_owner[version, self._seed(version, seed)]
            return self.paths.nvs_csv(owner, arm, scene, self.seed_dir(owner, owner_seed))
        return self.paths.nvs_csv(version, arm, scene, self.seed_dir(version, seed))

    def _seed(self, version: str, seed: int | None) -> int:
        seeds = self.seed_lists[version]
        if seed is None:
            return seeds[0]
        if seed not in seeds:
            raise PlanError(f"version {version}: seed {seed} is not one of its tuning.seeds {list(seeds)}")
        return seed

    def control_model(self, version: str, seed: int | None = None) -> str | None:
        """The control model the version's arms use (None when the study has no control arm); ``seed``: of
        that training seed (default the first)."""
        if not self.control_on:
            return None
        owner, owner_seed = self.control_seed_owner[version, self._seed(version, seed)]
        return self.paths.model(owner, CONTROL, self.seed_dir(owner, owner_seed))

    def control_train_log(self, version: str, seed: int | None = None) -> str | None:
        if not self.control_on:
            return None
        owner, owner_seed = self.control_seed_owner[version, self._seed(version, seed)]
        return self.paths.train_log(owner, CONTROL, self.seed_dir(owner, owner_seed))

    def control_inputs(self, version: str, kind: str, seed: int | None = None) -> list[str]:
        """The control model (``kind`` "model") or train log ("train_log") the version's jobs read, when
        the study has the control arm."""
        if not self.control_on:
            return []
        return [self.control_model(version, seed) if kind == "model" else self.control_train_log(version, seed)]

    @functools.cached_property
    def control_triplets(self) -> str:
        """The control arm's training triplets (hi4dfix.difix.control), refused when an image of them
        lies in the Hi4D root or the study's materialized scenes or renders."""
        try:
            check_fresh(self.difix)
        except ValueError as err:
            raise PlanError(str(err)) from None
        path = control_triplets_path(self.difix, self.paths.results)
        if Path(path).is_file():  # the control_triplets job's file exists once it has run
            forbidden = {"data.root": self.data["root"], "the materialized scenes": f"{self.paths.results}/scenes"}
            forbidden["the renders"] = f"{self.paths.results}/renders"
            check_control_triplets(path, forbidden)
        return path

    @property
    def control_made_here(self) -> bool:
        """Whether the control_triplets job makes the control's data (no difix.control.triplets given)."""
        return self.control_on and not self.difix["control"].get("triplets")

    def control_data(self) -> dict[str, Any]:
        """What the control_triplets job renders: the fresh out-of-domain scenes (difix.control), at the
        first version's processing size of its first training scene's frames, with that version's render
        profile (the study's fit-and-render path)."""
        from hi4dfix.difix.data import model_input_size  # torch: only when the DAG has the job

        version = self.version(self.version_names[0])
        size = self.scene_size(version.difix_train[0])
        geometry = self.training_geometry(version)
        height, width = model_input_size(size.height, size.width, geometry["resolution"], geometry["long_side"])
        return {
            "data": dataclasses.asdict(ControlDataConfig.from_control(self.difix["control"])),
            "size": [height, width],
            "render": dict(self.render_profiles[version.render_profile]),
        }

    # -- models ----------------------------------------------------------------------------------

    @property
    def base_spec(self) -> str:
        """What tuning starts from: the pretrain rule's output, or an official release / local path."""
        base, preset = self.difix["base"], self.difix["preset"]
        if base == "pretrain":
            if preset != "tiny":
                raise PlanError(
                    f"difix.base: pretrain builds a tiny base model, but difix.preset is {preset!r}; "
                    "set difix.base to an official release (nvidia/difix_ref), a local directory or a model_*.pkl"
                )
            return self.paths.base_model(preset)
        return base

    def base_input(self) -> list[str]:
        """The base checkpoint as a file dependency when the workflow builds it or it is a local path."""
        spec = self.base_spec
        return [spec] if spec.startswith(f"{self.paths.results}/") or Path(spec).exists() else []

    def nvs_model(self, version: str, arm: str, seed: int | None = None) -> str | None:
        """The DiFix checkpoint of an NVS arm: none for raw, the base, the version's tuned or control model
        (of training seed ``seed``, default the first)."""
        if arm == "raw":
            return None
        if arm == "base":
            return self.base_spec
        if arm == CONTROL:
            return self.control_model(version, seed) if self.control_on else _unknown_arm(arm)
        if arm != TUNED:
            return _unknown_arm(arm)
        return self.paths.model(version, TUNED, self.seed_dir(version, self._seed(version, seed)))

    def arm_model_param(self, version: str, arm: str) -> Any:
        """An NVS job's ``model`` param: :meth:`nvs_model`, or an extra arm's spec as plain data
        (:func:`hi4dfix.extra_arms.arm_fixer` takes either)."""
        return self.extra_arms[arm].params() if arm in self.extra_arms else self.nvs_model(version, arm)

    def extra_arm_params(self) -> dict[str, dict[str, Any]]:
        """Every extra arm's spec as plain data (the internal evaluation's param)."""
        return {name: arm.params() for name, arm in self.extra_arms.items()}

    def extra_arm_inputs(self) -> list[str]:
        """The extra arms' local weights (files and folders; Hub weights are checked at DAG build instead)."""
        return [path for arm in self.extra_arms.values() for path in local_inputs(arm)]

    def extra_arm_weights(self) -> dict[str, str]:
        """What provenance hashes for each extra arm (hi4dfix.extra_arms.weights_spec)."""
        return {name: weights_spec(arm, self.difix["hub_cache_dir"]) for name, arm in self.extra_arms.items()}

    def arm_preset(self, arm: str) -> str | None:
        """The DiFix preset an arm's job is sized by (hi4dfix.resources); None for raw. A TorchScript arm is
        sized as a full-size DiFix (nv-tlabs/Fixer's 2B model is larger; no measurement of it here yet)."""
        if arm == "raw":
            return None
        extra = self.extra_arms.get(arm)
        if extra is None:
            return self.difix_preset
        from hi4dfix.weights import saved_preset

        found = saved_preset(extra.model, self.difix["hub_cache_dir"]) if extra.kind == "difix" else None
        return found[0] if found is not None else "sd-turbo"

    def nvs_model_input(self, version: str, arm: str, seed: int | None = None) -> list[str]:
        if arm in self.extra_arms:
            return local_inputs(self.extra_arms[arm])
        if seed is not None and arm not in SHARED_ARMS:
            return [self.nvs_model(version, arm, seed)]
        if arm == "raw":
            return []
        return self.base_input() if arm == "base" else [self.nvs_model(version, arm)]

    @property
    def difix_preset(self) -> str:
        """The preset of the models the DiFix arms load (difix.base: pretrain builds a tiny one)."""
        return "tiny" if self.difix["base"] == "pretrain" else self.difix["preset"]

    @property
    def compile_cache_dir(self) -> str:
        """The study compile cache of the DiFix jobs: difix.compile_cache_dir, else under the results folder."""
        return self.difix["compile_cache_dir"] or self.paths.compile_cache()

    def training_geometry(self, version: Version) -> dict[str, Any]:
        """How the version's tuning run sizes its images (hi4dfix.difix.geometry)."""
        return geometry.training_geometry(self.difix, version.tuning)

    def inference_geometry(self, version: Version) -> dict[str, Any]:
        """Processing size of the version's DiFix arms: the tuning run's unless difix.eval_long_side says otherwise."""
        return geometry.inference_geometry(self.difix, version.tuning)

    # -- what jobs read ----------------------------------------------------------------------------

    def triplet_inputs(self, name: str) -> dict[str, Any]:
        """Renders and materialized scenes of the version's DiFix scenes (never reserved ones), and
        the version's content check, which must have passed."""
        version = self.version(name)
        self.check_triplet_cams(version)
        return {
            # training scenes from render_profile, evaluation scenes from eval_render_profile
            "renders": [self.paths.render(version.scene_profile(s), s) for s in version.difix_scenes],
            "scenes": [self.paths.scene(s) for s in version.difix_scenes],
            "content_check": self.paths.content_check(version.name),
        }

    def content_check_inputs(self, name: str) -> dict[str, list[str]]:
        """The version's DiFix scenes and the reserved scenes, materialized (their fingerprint.json)."""
        return {
            "scenes": [self.paths.scene(s) for s in self.version(name).difix_scenes],
            "reserved": [self.paths.scene(s) for s in self.reserved_scenes],
        }

    def nvs_scene_inputs(self, name: str, scene: str) -> dict[str, str]:
        """A reserved scene's renders and ground truth, for one version's NVS evaluation."""
        version = self.version(name)
        if scene not in version.nvs_eval:
            known = ", ".join(version.nvs_eval)
            raise ValueError(f"version {version.name}: scene {scene} is not in nvs_eval ({known})")
        return {"renders": self.paths.render(version.eval_profile, scene), "scene": self.paths.scene(scene)}

    def nvs_arm_csvs(self, name: str) -> dict[str, list[str]]:
        """Per-scene NVS CSVs of the version's reserved scenes, by arm (control only when it is on)."""
        version = self.version(name)
        return {arm: [self.nvs_csv(version.name, arm, scene) for scene in version.nvs_eval] for arm in self.arms}

    def seed_arm_csvs(self, name: str) -> dict[str, dict[int, list[str]]]:
        """Per-scene NVS CSVs of the further training seeds (:meth:`further_seeds`), by arm that trains and
        seed; empty with one seed."""
        version = self.version(name)
        return {
            arm: {seed: [self.nvs_csv(version.name, arm, scene, seed) for scene in version.nvs_eval] for seed in seeds}
            for arm in self.seeded_arms()
            if (seeds := self.further_seeds(version.name))
        }

    def seed_csv_list(self, name: str) -> list[str]:
        """:meth:`seed_arm_csvs` as one list (a rule's input)."""
        return [csv for by_seed in self.seed_arm_csvs(name).values() for csvs in by_seed.values() for csv in csvs]

    def eval_csvs(self, name: str) -> dict[int, str]:
        """The internal evaluation of each training seed's models (the first's: ``difix/eval.csv``)."""
        version = self.version(name).name
        return {seed: self.paths.eval_csv(version, self.seed_dir(version, seed)) for seed in self.seeds(version)}

    def scene_arm_csvs(self, name: str, scene: str) -> dict[str, str]:
        return {arm: self.nvs_csv(self.version(name).name, arm, scene) for arm in self.arms}

    def report_figures(self, name: str) -> list[str]:
        """The version's report items besides the delta table."""
        version, paths = self.version(name), self.paths
        return [
            paths.card(version.name),
            paths.metric_charts(version.name),
            *[paths.before_after(version.name, scene) for scene in version.nvs_eval],
            paths.gallery(version.name),
            paths.loss_curve(version.name),
        ]

    def eval_renders(self, name: str) -> list[str]:
        """The renders of the version's difix_eval scenes (its evaluation render profile)."""
        version = self.version(name)
        return [self.paths.render(version.eval_profile, scene) for scene in version.difix_eval]

    def delta_inputs(self, name: str) -> dict[str, Any]:
        """The arms' CSVs, the report figures, the internal evaluation's delta table and the provenance:
        a report holds only files in its target's DAG, so this makes the version's deltas.csv the
        whole report, and the main job make every expected output of the version."""
        further = {"seed_csvs": self.seed_csv_list(name)} if self.further_seeds(name) else {}
        return {
            **self.nvs_arm_csvs(name),
            **further,
            "report_figures": self.report_figures(name),
            "eval_deltas": self.paths.eval_deltas(name),
            "render_quality": self.render_quality_csvs(name),
            **self.seal_inputs(name),
        }

    def seal_inputs(self, name: str) -> dict[str, Any]:
        """What the sealed provenance record gathers (written by the delta_table job): the inputs record,
        the stamps of every output holding the version's numbers or models, the ground truth (the
        materialized scenes whose images are targets: internal evaluation and reserved scenes), eval.csv
        and the control model."""
        version, paths = self.version(name), self.paths
        further = self.further_seeds(version.name)
        stamped = [
            *(csv for csvs in self.nvs_arm_csvs(name).values() for csv in csvs),
            *self.seed_csv_list(name),
            *self.eval_csvs(name).values(),
            paths.eval_deltas(name),
            paths.model(name),
            *(self.nvs_model(version.name, TUNED, seed) for seed in further),
            *self.control_inputs(name, "model"),
            *(model for seed in further for model in self.control_inputs(name, "model", seed)),
            *([self.base_spec] if self.difix["base"] == "pretrain" else []),
        ]
        return {
            "provenance_inputs": paths.provenance_inputs(name),
            "stamps": [paths.stamp(p) for p in dict.fromkeys(stamped)],
            "ground_truth": [paths.scene(s) for s in dict.fromkeys([*version.difix_eval, *version.nvs_eval])],
            "eval_csv": paths.eval_csv(name),
            "control_model": self.control_inputs(name, "model"),
        }

    def render_quality_csvs(self, name: str) -> list[str]:
        """The raw renders' quality of the reserved scenes, in the delta table's scene order."""
        version = self.version(name)
        return [self.paths.render_quality(version.eval_profile, scene) for scene in version.nvs_eval]

    def all_deltas(self) -> list[str]:
        """Every version's delta table; each version is policy-checked first."""
        return [self.paths.deltas(self.version(name).name) for name in self.version_names]

    def scene_fingerprints(self, name: str) -> dict[str, str]:
        """Content fingerprints of every scene the version uses: fingerprint.json inside the scene folder."""
        version = self.version(name)
        scenes = dict.fromkeys([*version.difix_train, *version.difix_eval, *version.nvs_eval])
        return {scene: f"{self.paths.scene(scene)}/{FINGERPRINT_FILE}" for scene in scenes}

    def provenance_inputs(self, name: str) -> dict[str, list[str]]:
        return {
            "scenes": [self.paths.scene(scene) for scene in self.scene_fingerprints(name)],
            "arms": [csv for csvs in self.nvs_arm_csvs(name).values() for csv in csvs] + self.seed_csv_list(name),
        }

    # -- ablation grids --------------------------------------------------------------------------

    def grid_scenes(self, grid: str) -> list[str]:
        """The reserved scenes in the parent's order (every variant has the same ones: the policy)."""
        return list(self.version(self.grids[grid].parent).nvs_eval)

    def grid_tuned_csvs(self, grid: str) -> dict[str, list[str]]:
        """The tuned arm's per-scene CSVs of the parent and of every compared variant (each policy-checked)."""
        scenes = self.grid_scenes(grid)
        names = [self.grids[grid].parent, *(self.version(v.name).name for v in self.grids[grid].compared)]
        return {name: [self.nvs_csv(name, TUNED, scene) for scene in scenes] for name in names}

    def grid_seed_tables(self, grid: str) -> dict[str, list[list[str]]]:
        """The further training seeds' tuned per-scene CSVs of each version of the comparison, in seed order."""
        scenes = self.grid_scenes(grid)
        return {
            name: [[self.nvs_csv(name, TUNED, scene, seed) for scene in scenes] for seed in self.further_seeds(name)]
            for name in self.grid_tuned_csvs(grid)
        }

    def grid_seed_evals(self, grid: str) -> dict[str, list[str]]:
        """The further training seeds' internal evaluations (``eval.csv``) of each version of the comparison."""
        return {name: list(self.eval_csvs(name).values())[1:] for name in self.grid_tuned_csvs(grid)}

    def grid_eval_csvs(self, grid: str) -> dict[str, str]:
        """The internal evaluation (difix_eval test triplets) of the parent and of every compared variant."""
        return {name: self.paths.eval_csv(name) for name in self.grid_tuned_csvs(grid)}

    def grid_provenance(self, grid: str) -> dict[str, str]:
        """What made each compared number: the inputs record of each version of the comparison (not the
        sealed record, which would make every variant's delta table and report a job of the grid)."""
        return {name: self.paths.provenance_inputs(name) for name in self.grid_tuned_csvs(grid)}

    # -- tuning ----------------------------------------------------------------------------------

    def tuning_args(self, name: str, seed: int | None = None) -> str:
        """Command-line options of hi4dfix.difix.train: the version's tuning block, key for key (the run of
        training seed ``seed``: default the first, ``tuning.seed``), and ``--setting-names``: for every
        option the workflow passes, the config key that sets it (the trainer's errors name it), as JSON."""
        version = self.version(name)
        tuning = version.tuning
        if "seeds" in tuning:  # one seed's run: the trainer takes --seed, never the list
            tuning = replicate_tuning(tuning, self._seed(name, seed))
        options: dict[str, Any] = {key: value for key, value in tuning.items() if value is not None}
        names = {
            "base": "difix.base",
            "triplets": f"versions.{name} (splits and triplets)",
            "num_processes": "the gpu resource of the tuning rule",
            **{key: f"versions.{name}.tuning.{key}" for key in options},
            **({"seed": f"versions.{name}.tuning.seeds"} if seed is not None and seed != self.seeds(name)[0] else {}),
            "long_side": "difix.long_side",
            "compile_cache_dir": "difix.compile_cache_dir",
        }
        options["long_side"] = self.training_geometry(version)["long_side"]
        options["compile_cache_dir"] = self.compile_cache_dir
        if self.difix["hub_cache_dir"]:
            options["hub_cache_dir"] = self.difix["hub_cache_dir"]
            names["hub_cache_dir"] = "difix.hub_cache_dir"
        options["setting_names"] = json.dumps(names)
        return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())

    # -- resources -------------------------------------------------------------------------------
    # Jobs whose cost grows with a scene ask for memory and time from per-unit costs measured in
    # BENCHMARKS.md (hi4dfix.resources), scaled by the scene's frames and image size, known at DAG
    # build from the config (synthetic data) or the sequence's meta.npz (Hi4D).

    def gpu_resources(self, count: int = 1) -> dict[str, int]:
        """A GPU rule's ``gpu`` resource: only where the machine has a GPU (a profile may set it:
        the Slurm profile does), so a CPU run neither shows nor asks for one."""
        return {"gpu": count} if self.gpus else {}

    def scene_size(self, scene: str) -> resources.SceneSize:
        if scene not in self._sizes:  # meta.npz read once per scene (Hi4D data)
            self._sizes[scene] = resources.scene_size(self.config, self.sequence_path(scene))
        return self._sizes[scene]

    def source_pixel_scale(self) -> float:
        """Source image pixels relative to Hi4D's 940x1280 (materialize reads the sources)."""
        if self.data["source"] != "synthetic":
            return 1.0
        synthetic = self.data.get("synthetic", {})
        return synthetic.get("width", 120) * synthetic.get("height", 160) / resources.FULL_PIXELS

    def evaluation_chunk(self) -> int:
        """Views held at once by an evaluation job: metrics.chunk_views in whole DiFix batches."""
        batch = self.difix["inference"]["batch_size"]
        return -(-self.config["metrics"]["chunk_views"] // batch) * batch

    def heldout_views(self, profile: str, scene: str, cams: Any = None) -> int:
        """Held-out views of a scene: every frame at the cameras that are not a render source."""
        size = self.scene_size(scene)
        source_cams = self.render_profiles[profile].get("source_cams") or [None]  # null: the mono camera
        count = size.cameras - len(source_cams) if cams is None else len(set(cams) - set(source_cams))
        return size.frames * count

    def profile_fit_steps(self, profile: str) -> int:
        settings = self.render_profiles[profile]
        return settings.get("fit_steps", 0) if settings.get("source", "fit") == "fit" else 0

    def nvs_mem_mb(self, arm: str, scene: str, attempt: int) -> int:
        presets = [] if arm == "raw" else [self.arm_preset(arm)]
        scale = self.scene_size(scene).pixel_scale
        return resources.evaluation_mem_mb(
            scale, self.evaluation_chunk(), presets, attempt, gpu=bool(self.gpus), tuned=arm not in ("raw", "base")
        )

    def nvs_runtime(self, name: str, arm: str, scene: str, attempt: int) -> int:
        version = self.version(name)
        return resources.nvs_runtime_min(
            self.scene_size(scene),
            self.heldout_views(version.eval_profile, scene),
            self.arm_preset(arm),
            version.nvs["mode"],
            self.profile_fit_steps(version.eval_profile),
            attempt,
            version.nvs.get("rounds", resources.PROGRESSIVE_ROUNDS),
        )

    def difix_eval_views(self, version: Version) -> int:
        """Test triplets of a version: its difix_eval scenes' held-out views (triplets.cams, max_samples)."""
        cams, limit = version.triplets.get("cams"), version.triplets.get("max_samples")
        views = sum(self.heldout_views(version.eval_profile, scene, cams) for scene in version.difix_eval)
        return min(views, limit) if limit else views

    def difix_eval_mem_mb(self, name: str, attempt: int) -> int:
        version = self.version(name)
        scale = max(self.scene_size(scene).pixel_scale for scene in version.difix_eval)
        presets = [self.arm_preset(arm) for arm in self.arms if arm != "raw"]  # every arm but raw
        return resources.evaluation_mem_mb(
            scale, self.evaluation_chunk(), presets, attempt, gpu=bool(self.gpus), tuned=len(presets) > 1
        )

    def difix_eval_runtime(self, name: str, attempt: int) -> int:
        version = self.version(name)
        scale = max(self.scene_size(scene).pixel_scale for scene in version.difix_eval)
        arms = [self.arm_preset(arm) for arm in self.arms]
        return resources.evaluation_runtime_min(self.difix_eval_views(version), scale, arms, attempt)

    def render_runtime(self, profile: str, scene: str, attempt: int) -> int:
        return resources.render_runtime_min(self.scene_size(scene), self.profile_fit_steps(profile), attempt)

    def materialize_runtime(self, scene: str, attempt: int) -> int:
        return resources.materialize_runtime_min(self.scene_size(scene), self.source_pixel_scale(), attempt)

    # -- the record of a version ---------------------------------------------------------------

    def version_params(self, name: str) -> dict[str, Any]:
        """The checked version as plain data for `params:` (Snakemake compares builtin types only)."""
        return dataclasses.asdict(self.version(name))

    def version_data_config(self, name: str) -> dict[str, Any]:
        """The data block as the version sees it: its own scenes (and their folder overrides) only, so a
        scene added to the study (a grid's extra training scenes) leaves the version's record as it was."""
        scenes = list(self.scene_fingerprints(name))
        data = {**self.config.get("data", {}), "scenes": scenes}
        if "scene_dirs" in data:
            data["scene_dirs"] = {s: d for s, d in data["scene_dirs"].items() if s in scenes}
        return data

    def resolved_version_config(self, name: str) -> dict[str, Any]:
        """The version block with the render profiles and the study-wide blocks its numbers depend on."""
        version = self.version(name)
        resolved = {
            "version": self.version_params(name),
            "render_profile": self.render_profiles[version.render_profile],
            "eval_render_profile": self.render_profiles[version.eval_profile],
            "data": self.version_data_config(name),
            **{key: self.config[key] for key in STUDY_BLOCKS if key in self.config},
        }
        # keys sorted: Snakemake compares params by their repr, and a --configfile merge reorders keys
        return json.loads(canonical(resolved))

    def card_difix(self, name: str) -> dict[str, Any]:
        """The DiFix settings the version card shows."""
        version = self.version(name)
        return {
            "base": self.difix["base"],
            "preset": self.difix["preset"],
            "processing size, tuning": self.training_geometry(version),
            "processing size, DiFix arms": self.inference_geometry(version),
            "control arm": (
                f"on: the base tuned with this version's settings on {self.control_triplets}"
                if self.control_on
                else "off (difix.control.enabled: false)"
            ),
            **(
                {"extra arms": "; ".join(f"{n}: {d}" for n, d in self.card_extra_arms().items())}
                if self.extra_arms
                else {}
            ),
        }

    def card_extra_arms(self) -> dict[str, str]:
        """The extra arms as the version card shows them (none: no line)."""
        shown = {}
        for name, arm in self.extra_arms.items():
            if arm.kind == "difix":
                shown[name] = f"DiFix {arm.model}, {'with' if arm.reference else 'without'} the reference view"
            else:
                size = "x".join(map(str, arm.contract.resolution))
                source = f"{arm.repo}:{arm.file}" if arm.repo else arm.file
                shown[name] = f"TorchScript {source} at {size} (W x H), {arm.contract.dtype}, no reference view"
        return shown

    def environment_problem(self) -> str | None:
        """What this machine lacks for the config, refused at DAG build: the LPIPS backbone when
        metrics.require_lpips is true (None: nothing)."""
        from hi4dfix.metrics import lpips_available, lpips_cache_help
        from hi4dfix.weights import FETCH_COMMAND

        if self.config["metrics"]["require_lpips"] and not lpips_available():
            return (
                f"metrics.require_lpips is true but the LPIPS backbone is not cached. {lpips_cache_help()} "
                f"`{FETCH_COMMAND}` fetches it."
            )
        return self.tracker_problem()

    def tracker_problem(self) -> str | None:
        """A ``log_with`` (each version's tuning, the base's pretraining) whose tracker package is missing."""
        from hi4dfix.difix.trackers import tracker_problem

        settings = {
            f"versions.{name}.tuning.log_with": self.version(name).tuning.get("log_with") for name in self.version_names
        }
        if self.difix["base"] == "pretrain":
            settings["difix.pretrain.log_with"] = self.difix["pretrain"].get("log_with")
        for setting, log_with in settings.items():
            if log_with and (problem := tracker_problem(log_with, setting)) is not None:
                return problem
        return None

    def missing_weights(self) -> str | None:
        """The pretrained weights the config needs that the caches lack (a preview lists them, a run stops)."""
        from hi4dfix.weights import missing_weights_message

        return missing_weights_message(self.config)


def _unknown_arm(arm: str) -> str:
    raise KeyError(arm)


def load(
    config: dict[str, Any],
    basedir: str | Path = REPO,
    gpus: int | None = None,
    shown_as: str = SCHEMA,
    config_files: Iterable[str | os.PathLike] = (),
) -> Plan:
    """The plan of a merged config: :func:`load_config` (in place), then :class:`Plan`."""
    grids = load_config(config, basedir, shown_as, config_files)
    return Plan(config, grids, local_gpus() if gpus is None else gpus)


__all__ = ["Paths", "Plan", "PlanError", "load", "load_config", "local_gpus", "one_of", "owners", "sequence_index"]
__all__ += ["triplet_key"]
