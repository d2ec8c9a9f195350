# Workflow-level definitions shared by every stage: the study model, the start and end handlers,
# wildcard constraints, paths, input and params functions, and resources.
# Input functions enforce the reserved-scene policy, so a version that breaks it fails at
# DAG build, before any job runs, with a message naming the version and the scene. The policy
# compares what scenes are (sequence folders, Hi4D pair and action), not names: hi4dfix.study.

import dataclasses
import functools
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

import numpy as np

from hi4dfix import resources, sources
from hi4dfix.ablations import canonical, owners, triplet_owners
from hi4dfix.compare import provenance_path
from hi4dfix.difix import geometry as difix_geometry
from hi4dfix.difix.control import check_control_triplets, control_triplets_path
from hi4dfix.hi4d.layout import HI4D_CAMERA_IDS
from hi4dfix.logs import failed_job_reports
from hi4dfix.metrics import lpips_available, lpips_cache_help
from hi4dfix.study import Study
from hi4dfix.tables import CONTROL, study_arms
from hi4dfix.weights import FETCH_COMMAND, missing_weights_message, preset_mismatch_message

STUDY = Study.from_config(config, resolve_links=True)  # links under data.root followed: hi4dfix.study

# A local difix.base of another preset than difix.preset: refused here, by name, not by a download
# attempt in the first job that loads it.
PRESET_MISMATCH = preset_mismatch_message(config)
if PRESET_MISMATCH is not None:
    raise WorkflowError(PRESET_MISMATCH)

if config["metrics"]["require_lpips"] and not lpips_available():
    raise WorkflowError(
        f"metrics.require_lpips is true but the LPIPS backbone is not cached. {lpips_cache_help()} "
        f"`{FETCH_COMMAND}` fetches it."
    )
# The DiFix base and SD-Turbo from the Hub, VGG16 for tuning losses, looked up offline in the
# caches: a preview (-n) lists what is missing, a run stops before its first job.
MISSING_WEIGHTS = missing_weights_message(config)
if MISSING_WEIGHTS is not None:
    logger.warning(MISSING_WEIGHTS)


onstart:
    if MISSING_WEIGHTS is not None:
        raise WorkflowError(MISSING_WEIGHTS)


DATA = config["data"]
RESULTS = "results"
# The control arm (difix.control): the base trained as long as `tuned`, on the base's own data.
CONTROL_ON = config["difix"]["control"]["enabled"]
STUDY_ARMS = study_arms(CONTROL_ON)


onsuccess:
    # the tables a run made, printed at its end
    for version in STUDY.versions:
        for table in (Path(f"{RESULTS}/{version}/difix/eval_deltas.md"), Path(f"{RESULTS}/{version}/deltas.md")):
            if table.exists():
                print(f"\n({table})\n{table.read_text()}")


onerror:
    # Snakemake names a failed job's log but not what it says: its last error line, on the console
    for report in failed_job_reports(log):
        print(report, file=sys.stderr)


# The Python that runs Snakemake runs the `python -m` commands of shell jobs (a bare `python` may
# be another one), except in a conda or container environment, where the environment's own runs
# them (as Snakemake's `script:` does). Jobs take it as a param.
PYTHON = (
    "python"
    if {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER} & set(workflow.deployment_settings.deployment_method)
    else shlex.quote(sys.executable)
)
# The command of a DiFix tuning job, shared by the jobs that tune (tune_difix; the control arm).
# It reads input.triplets, params.python (PYTHON), params.base, params.workdir, params.args
# (tuning_args), output.model, output.train_log, resources.gpu and log. Each fingerprint of data
# and settings trains in its own folder under params.workdir, which keeps its model.pkl
# (hi4dfix.difix.train).
TUNE_DIFIX_SHELL = (
    "{params.python} -m hi4dfix.difix.launch --gpus {resources.gpu} --"
    " --triplets {input.triplets:q} --base {params.base:q} --output {output.model:q}"
    " --output-train-log {output.train_log:q} --output-dir {params.workdir:q} --run-per-fingerprint true"
    " {params.args} > {log:q} 2>&1"
)


def _one_of(names):
    return "|".join(re.escape(name) for name in sorted(names))


wildcard_constraints:
    scene=_one_of(STUDY.scenes),
    version=_one_of(STUDY.versions),
    profile=_one_of(STUDY.render_profiles),
    arm=_one_of(STUDY_ARMS),
    grid=_one_of(GRIDS),
    preset="tiny",


# ---- paths -------------------------------------------------------------------------------


def sequence_path(scene):
    """The scene's Hi4D sequence folder (real or synthetic)."""
    return f"{DATA['root']}/{STUDY.sequence_dir(scene)}"


# ---- shared work between versions (ablation grids) ------------------------------------------
# A version whose triplets (render settings, DiFix scenes, triplet settings) or raw/base NVS arms
# (render settings, NVS settings, processing size) are an earlier version's reads that version's
# files: the first version in the config with those settings makes them, once.

TRIPLET_OWNER = triplet_owners(STUDY)
SHARED_ARMS = ("raw", "base")  # arms that do not depend on the version's tuning


def _arm_key(version):
    """What the raw and base NVS arms of a version depend on."""
    return [
        STUDY.render_profiles[version.eval_profile],
        version.nvs,
        version.nvs_eval,
        difix_geometry.inference_geometry(config["difix"], version.tuning),
    ]


ARM_OWNER = owners({name: canonical(_arm_key(v)) for name, v in STUDY.versions.items()})
# The control arm trains on the base's own data, not the version's triplets: its model depends on the
# tuning settings and processing size alone, its NVS CSVs on those and the raw/base arms' settings.
CONTROL_OWNER = owners(
    {
        name: canonical([v.tuning, difix_geometry.training_geometry(config["difix"], v.tuning)])
        for name, v in STUDY.versions.items()
    }
)
CONTROL_ARM_OWNER = owners({name: canonical([*_arm_key(v), CONTROL_OWNER[name]]) for name, v in STUDY.versions.items()})


def triplets_path(version):
    """The version's triplet JSON: made by the first version with the same triplet inputs."""
    return f"{RESULTS}/{TRIPLET_OWNER[version]}/triplets.json"


def version_triplets(wildcards):
    return triplets_path(wildcards.version)


def nvs_csv(version, arm, scene):
    """Per-scene NVS metrics of one arm; raw, base and control come from the first version that shares them."""
    owner = ARM_OWNER[version] if arm in SHARED_ARMS else CONTROL_ARM_OWNER[version] if arm == CONTROL else version
    return f"{RESULTS}/{owner}/nvs/{arm}/{scene}.csv"


def reserved_sequence_paths():
    """Each reserved scene's sequence folder: the triplet writer refuses samples of their data."""
    return {scene: f"{DATA['root']}/{folder}" for scene, folder in STUDY.reserved_dirs.items()}


def scene_path(scene):
    return f"{RESULTS}/scenes/{scene}"


def render_path(profile, scene):
    return f"{RESULTS}/renders/{profile}/{scene}"


def difix_base_spec():
    """What tuning starts from: the pretrain rule's output, or an official release / local path."""
    base, preset = config["difix"]["base"], config["difix"]["preset"]
    if base == "pretrain":
        if preset != "tiny":
            raise ValueError(
                f"difix.base: pretrain builds a tiny base model, but difix.preset is {preset!r}; "
                "set difix.base to an official release (nvidia/difix_ref), a local directory or a model_*.pkl"
            )
        return f"{RESULTS}/difix_base/{preset}/model.pkl"
    return base


def control_model_path(version):
    return f"{RESULTS}/{version}/difix/{CONTROL}/model.pkl"


def control_train_log(version):
    return f"{RESULTS}/{version}/difix/{CONTROL}/train_log.csv"


@functools.lru_cache(maxsize=None)
def control_triplets():
    """The control arm's training triplets (hi4dfix.difix.control), refused at DAG build when an image
    of them lies in the Hi4D root or the study's materialized scenes or renders."""
    path = control_triplets_path(config["difix"], RESULTS)
    if Path(path).is_file():  # the pretraining's own file exists once the base is built
        forbidden = {"data.root": DATA["root"], "the materialized scenes": f"{RESULTS}/scenes"}
        forbidden["the renders"] = f"{RESULTS}/renders"
        check_control_triplets(path, forbidden)
    return path


# ---- input functions -----------------------------------------------------------------------


def sequence_index_files(wildcards):
    """Raw inputs of one scene: touching them makes only that scene's jobs stale."""
    root = sequence_path(wildcards.scene)
    return [f"{root}/meta.npz", f"{root}/cameras/rgb_cameras.npz"]


def source_state(wildcards):
    """The scene's source images, masks and SMPL files by content, as a param: a changed file
    reruns that scene's materialize and what follows (hi4dfix.sources says why not inputs)."""
    return sources.source_state(scene_path(wildcards.scene), sequence_path(wildcards.scene))


@functools.lru_cache(maxsize=None)
def _checked(name):
    return STUDY.check_version(name)  # a refused version raises, and is not cached


def checked_version(wildcards):
    return _checked(wildcards.version)


def version_params(wildcards):
    """The checked version as plain data for `params:`: Snakemake reruns a job whose params
    changed, but compares builtin types only (a dataclass would be ignored)."""
    return dataclasses.asdict(checked_version(wildcards))


def version_profile(wildcards):
    return checked_version(wildcards).render_profile


def version_eval_profile(wildcards):
    """The render profile of the version's evaluation renders (difix_eval, nvs_eval): Version.eval_profile."""
    return checked_version(wildcards).eval_profile


def triplet_inputs(wildcards):
    """Renders and materialized scenes of the version's DiFix scenes (never reserved ones), and
    the version's content check (check_reserved_content), which must have passed."""
    version = checked_version(wildcards)
    check_triplet_cams(version)
    return {
        # training scenes from render_profile, evaluation scenes from eval_render_profile
        "renders": [render_path(version.scene_profile(s), s) for s in version.difix_scenes],
        "scenes": [scene_path(s) for s in version.difix_scenes],
        "content_check": f"{RESULTS}/{version.name}/content_check.json",
    }


def content_check_inputs(wildcards):
    """The version's DiFix scenes and the reserved scenes, materialized (their fingerprint.json)."""
    version = checked_version(wildcards)
    return {
        "scenes": [scene_path(s) for s in version.difix_scenes],
        "reserved": [scene_path(s) for s in sorted(STUDY.reserved_scenes)],
    }


def scene_camera_ids(scene):
    """The scene's camera ids, known at DAG build: Hi4D's for synthetic data, else rgb_cameras.npz (None when absent)."""
    if DATA["source"] == "synthetic":
        return list(HI4D_CAMERA_IDS)
    cameras = Path(sequence_path(scene)) / "cameras" / "rgb_cameras.npz"
    if not cameras.is_file():
        return None
    with np.load(cameras) as archive:
        return [int(cam) for cam in archive["ids"]]


def check_triplet_cams(version):
    """triplets.cams must name cameras every DiFix scene has (else its triplets would be silently empty)."""
    cams = version.triplets.get("cams")
    if not cams:
        return
    for scene in version.difix_scenes:
        known = scene_camera_ids(scene)
        unknown = sorted(set(cams) - set(known)) if known is not None else []
        if unknown:
            raise ValueError(
                f"version {version.name}: triplets.cams names camera(s) {unknown} that scene {scene} does not "
                f"have (its cameras: {', '.join(map(str, known))})"
            )


def difix_base_input(wildcards):
    """The base checkpoint as a file dependency when the workflow builds it or it is a local path."""
    spec = difix_base_spec()
    is_local = spec.startswith(f"{RESULTS}/") or Path(spec).exists()
    return [spec] if is_local else []


def nvs_scene_inputs(wildcards):
    """A reserved scene's renders and ground truth, for one version's NVS evaluation."""
    version = checked_version(wildcards)
    if wildcards.scene not in version.nvs_eval:
        raise ValueError(
            f"version {version.name}: scene {wildcards.scene} is not in nvs_eval ({', '.join(version.nvs_eval)})"
        )
    return {
        "renders": render_path(version.eval_profile, wildcards.scene),
        "scene": scene_path(wildcards.scene),
    }


def control_model_input(wildcards):
    """The version's control model, when the study has the control arm (difix.control.enabled)."""
    return [control_model_path(CONTROL_OWNER[wildcards.version])] if CONTROL_ON else []


def control_triplets_input(wildcards):
    return control_triplets()


def nvs_model_input(wildcards):
    """The DiFix checkpoint of an NVS arm: none for raw, the base for base, the version's for tuned and control."""
    if wildcards.arm == "raw":
        return []
    if wildcards.arm == "base":
        return difix_base_input(wildcards)
    return [nvs_model_spec(wildcards)]


def nvs_model_spec(wildcards):
    specs = {"raw": None, "base": difix_base_spec(), "tuned": f"{RESULTS}/{wildcards.version}/difix/model.pkl"}
    if CONTROL_ON:
        specs[CONTROL] = control_model_path(CONTROL_OWNER[wildcards.version])
    return specs[wildcards.arm]


def nvs_arm_csvs(wildcards):
    """Per-scene NVS metric CSVs of the version's reserved scenes, by arm (control only when it is on)."""
    version = checked_version(wildcards)
    return {arm: [nvs_csv(version.name, arm, scene) for scene in version.nvs_eval] for arm in STUDY_ARMS}


def scene_arm_csvs(wildcards):
    """One reserved scene's NVS CSVs, by arm."""
    return {arm: nvs_csv(checked_version(wildcards).name, arm, wildcards.scene) for arm in STUDY_ARMS}


def report_path(version, name):
    return f"{RESULTS}/{version}/report/{name}"


def report_figures(version):
    """The version's report items besides the delta table (policy-checked first)."""
    checked = STUDY.check_version(version)
    return [
        report_path(version, "card.html"),
        report_path(version, "metrics.png"),
        *[report_path(version, f"before_after/{scene}.png") for scene in checked.nvs_eval],
        report_path(version, "gallery.png"),
        report_path(version, "train_loss.png"),
    ]


def delta_inputs(wildcards):
    """The arms' CSVs, the report figures and the internal evaluation's delta table: a report holds
    only files in its target's DAG, so this is what makes `snakemake --report R results/{version}/deltas.csv`
    the whole report, and the main job make every expected output of the version."""
    return {
        **nvs_arm_csvs(wildcards),
        "report_figures": report_figures(wildcards.version),
        "eval_deltas": f"{RESULTS}/{wildcards.version}/difix/eval_deltas.csv",
        "provenance": f"{RESULTS}/{wildcards.version}/provenance.json",
    }


# ---- processing size: one setting for tuning and the DiFix arms ------------------------------


def training_geometry(wildcards):
    """How the version's tuning run sizes its images (hi4dfix.difix.geometry.training_geometry)."""
    return difix_geometry.training_geometry(config["difix"], checked_version(wildcards).tuning)


def inference_geometry(wildcards):
    """Processing size of the version's DiFix arms: the tuning run's unless difix.eval_long_side says otherwise."""
    return difix_geometry.inference_geometry(config["difix"], checked_version(wildcards).tuning)


def compile_cache_dir():
    """The study compile cache of the DiFix jobs (hi4dfix.difix.compile_cache): difix.compile_cache_dir,
    else under the results folder."""
    return config["difix"]["compile_cache_dir"] or f"{RESULTS}/compile_cache"


def tuning_args(wildcards):
    """Command-line options of hi4dfix.difix.train: the version's tuning block, key for key."""
    options = {key: value for key, value in checked_version(wildcards).tuning.items() if value is not None}
    options["long_side"] = training_geometry(wildcards)["long_side"]
    options["compile_cache_dir"] = compile_cache_dir()
    if config["difix"]["hub_cache_dir"]:
        options["hub_cache_dir"] = config["difix"]["hub_cache_dir"]
    # errors name the config keys that set the options
    options["setting_keys"] = (
        f"base=difix.base,long_side=difix.long_side,triplets=versions.{wildcards.version} (splits and triplets),"
        f"num_processes=the gpu resource of the tuning rule,*=versions.{wildcards.version}.tuning"
    )
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())


# ---- resources -----------------------------------------------------------------------------------
# Jobs whose cost grows with a scene ask for memory and time from per-unit costs measured in
# BENCHMARKS.md (each figure and its source: hi4dfix/resources.py), scaled by the scene's frames and
# image size, known at DAG build from the config (synthetic data) or the sequence's meta.npz (Hi4D).


@functools.lru_cache(maxsize=None)
def scene_size_of(scene):
    return resources.scene_size(config, sequence_path(scene))


def source_pixel_scale():
    """Source image pixels relative to Hi4D's 940x1280 (materialize reads the sources)."""
    if DATA["source"] != "synthetic":
        return 1.0
    synthetic = DATA.get("synthetic", {})
    return synthetic.get("width", 120) * synthetic.get("height", 160) / resources.FULL_PIXELS


def difix_preset():
    """The preset of the models the DiFix arms load (difix.base: pretrain builds a tiny one)."""
    return "tiny" if config["difix"]["base"] == "pretrain" else config["difix"]["preset"]


def evaluation_chunk():
    """Views held at once by an evaluation job: metrics.chunk_views in whole DiFix batches."""
    batch = config["difix"]["inference"]["batch_size"]
    return -(-config["metrics"]["chunk_views"] // batch) * batch


def heldout_views(profile, scene, cams=None):
    """Held-out views of a scene: every frame at the cameras that are not a render source."""
    size = scene_size_of(scene)
    sources = STUDY.render_profiles[profile].get("source_cams") or [None]  # null: the mono camera
    count = size.cameras - len(sources) if cams is None else len(set(cams) - set(sources))
    return size.frames * count


def profile_fit_steps(profile):
    settings = STUDY.render_profiles[profile]
    return settings.get("fit_steps", 0) if settings.get("source", "fit") == "fit" else 0


def nvs_mem_mb(wildcards, attempt):
    presets = [] if wildcards.arm == "raw" else [difix_preset()]
    return resources.evaluation_mem_mb(scene_size_of(wildcards.scene).pixel_scale, evaluation_chunk(), presets, attempt)


def nvs_runtime(wildcards, attempt):
    version = checked_version(wildcards)
    views = heldout_views(version.eval_profile, wildcards.scene)
    preset = None if wildcards.arm == "raw" else difix_preset()
    return resources.nvs_runtime_min(
        scene_size_of(wildcards.scene),
        views,
        preset,
        version.nvs["mode"],
        profile_fit_steps(version.eval_profile),
        attempt,
        version.nvs.get("rounds", resources.PROGRESSIVE_ROUNDS),
    )


def difix_eval_views(version):
    """Test triplets of a version: its difix_eval scenes' held-out views (triplets.cams, max_samples)."""
    cams, limit = version.triplets.get("cams"), version.triplets.get("max_samples")
    views = sum(heldout_views(version.eval_profile, scene, cams) for scene in version.difix_eval)
    return min(views, limit) if limit else views


def difix_eval_mem_mb(wildcards, attempt):
    version = checked_version(wildcards)
    scale = max(scene_size_of(scene).pixel_scale for scene in version.difix_eval)
    models = len(STUDY_ARMS) - 1  # every arm but raw
    return resources.evaluation_mem_mb(scale, evaluation_chunk(), [difix_preset()] * models, attempt)


def difix_eval_runtime(wildcards, attempt):
    version = checked_version(wildcards)
    scale = max(scene_size_of(scene).pixel_scale for scene in version.difix_eval)
    arms = [None if arm == "raw" else difix_preset() for arm in STUDY_ARMS]
    return resources.evaluation_runtime_min(difix_eval_views(version), scale, arms, attempt)


def render_runtime(wildcards, attempt):
    return resources.render_runtime_min(scene_size_of(wildcards.scene), profile_fit_steps(wildcards.profile), attempt)


def materialize_runtime(wildcards, attempt):
    return resources.materialize_runtime_min(scene_size_of(wildcards.scene), source_pixel_scale(), attempt)


def versions_with_deltas(wildcards):
    """Every version's delta table; each version is policy-checked first."""
    return [f"{RESULTS}/{STUDY.check_version(name).name}/deltas.csv" for name in STUDY.versions]


# ---- ablation grids ---------------------------------------------------------------------------


def grid_of(wildcards):
    return GRIDS[wildcards.grid]


def grid_scenes(wildcards):
    """The reserved scenes in the parent's order (every variant has the same ones: the policy)."""
    return list(STUDY.check_version(grid_of(wildcards).parent).nvs_eval)


def grid_tuned_csvs(wildcards):
    """The tuned arm's per-scene CSVs of the parent and of every compared variant (each policy-checked)."""
    grid, scenes = grid_of(wildcards), grid_scenes(wildcards)
    names = [grid.parent, *(STUDY.check_version(v.name).name for v in grid.compared)]
    return {name: [nvs_csv(name, "tuned", scene) for scene in scenes] for name in names}


def grid_eval_csvs(wildcards):
    """The internal evaluation (difix_eval test triplets) of the parent and of every compared variant."""
    return {name: f"{RESULTS}/{name}/difix/eval.csv" for name in grid_tuned_csvs(wildcards)}


# ---- provenance (provenance.smk) ----------------------------------------------------------------


def scene_fingerprints(wildcards):
    """Content fingerprints of every scene the version uses: fingerprint.json, which the materialize
    rule writes inside the scene folder (so the folder is the rule's input)."""
    version = checked_version(wildcards)
    scenes = dict.fromkeys([*version.difix_train, *version.difix_eval, *version.nvs_eval])
    return {scene: f"{scene_path(scene)}/fingerprint.json" for scene in scenes}


def version_data_config(wildcards):
    """The data block as the version sees it: its own scenes (and their folder overrides) only, so a
    scene added to the study (a grid's extra training scenes) leaves the version's record as it was."""
    scenes = list(scene_fingerprints(wildcards))
    data = {**config.get("data", {}), "scenes": scenes}
    if "scene_dirs" in data:
        data["scene_dirs"] = {s: d for s, d in data["scene_dirs"].items() if s in scenes}
    return data


def resolved_version_config(wildcards):
    """The version block with the render profile and the study-wide blocks its numbers depend on."""
    resolved = {
        "version": version_params(wildcards),
        "render_profile": STUDY.render_profiles[version_profile(wildcards)],
        "eval_render_profile": STUDY.render_profiles[version_eval_profile(wildcards)],
        "data": version_data_config(wildcards),
        **{key: config[key] for key in ("materialize", "difix", "metrics", "stats", "policy") if key in config},
    }
    # keys sorted: Snakemake compares params by their repr, and a --configfile merge reorders keys
    return json.loads(canonical(resolved))
