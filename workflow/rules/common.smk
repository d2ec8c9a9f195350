# Glue between the rules and the study's plan (hi4dfix.plan, built in the Snakefile from the
# validated config): the start and end handlers, wildcard constraints and one-line input, params
# and resources functions. The plan reaches a version only through the reserved-scene policy check,
# so a version that breaks it fails at DAG build, before any job runs, naming the version and the scene.

import re
import shlex
import sys

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

from hi4dfix.logs import failed_job_reports
from hi4dfix.metrics import lpips_available, lpips_cache_help
from hi4dfix.tables import CONTROL
from hi4dfix.weights import FETCH_COMMAND, missing_weights_message

PATHS = PLAN.paths

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


onsuccess:
    # the tables a run made, printed at its end
    for table in PLAN.summary_tables():
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
# A GPU rule's gpu resource: only where this machine has a GPU; a profile may set it (Slurm's does).
GPU = PLAN.gpu_resources()


def _one_of(names):
    return "|".join(re.escape(name) for name in sorted(names))


wildcard_constraints:
    scene=_one_of(PLAN.scenes),
    version=_one_of(PLAN.version_names),
    profile=_one_of(PLAN.render_profiles),
    arm=_one_of(PLAN.arms),
    grid=_one_of(PLAN.grids),
    preset="tiny",


# ---- input functions -----------------------------------------------------------------------


def get_sequence_index_files(wildcards):
    return PLAN.sequence_index_files(wildcards.scene)


def get_triplets(wildcards):
    return PLAN.triplets(wildcards.version)


def get_triplet_inputs(wildcards):
    return PLAN.triplet_inputs(wildcards.version)


def get_content_check_inputs(wildcards):
    return PLAN.content_check_inputs(wildcards.version)


def get_difix_scenes(wildcards, split):
    return [PATHS.scene(s) for s in getattr(PLAN.version(wildcards.version), split)]


def get_base_input(wildcards):
    return PLAN.base_input()


def get_control_model_input(wildcards):
    return [PLAN.control_model(wildcards.version)] if PLAN.control_on else []


def get_control_triplets(wildcards):
    return PLAN.control_triplets


def get_nvs_scene_inputs(wildcards):
    return PLAN.nvs_scene_inputs(wildcards.version, wildcards.scene)


def get_nvs_model_input(wildcards):
    return PLAN.nvs_model_input(wildcards.version, wildcards.arm)


def get_nvs_arm_csvs(wildcards):
    return PLAN.nvs_arm_csvs(wildcards.version)


def get_scene_arm_csvs(wildcards):
    return PLAN.scene_arm_csvs(wildcards.version, wildcards.scene)


def get_delta_inputs(wildcards):
    return PLAN.delta_inputs(wildcards.version)


def get_all_deltas(wildcards):
    return PLAN.all_deltas()


def get_eval_renders(wildcards):
    version = PLAN.version(wildcards.version)
    return [PATHS.render(version.eval_profile, scene) for scene in version.difix_eval]


def get_control_train_logs(wildcards):
    return [PLAN.control_train_log(wildcards.version)] if PLAN.control_on else []


def get_provenance_inputs(wildcards):
    return PLAN.provenance_inputs(wildcards.version)


# ---- params functions ------------------------------------------------------------------------


def get_version(wildcards):
    """The policy-checked version (hi4dfix.study.Version) of the job."""
    return PLAN.version(wildcards.version)


def get_version_params(wildcards):
    return PLAN.version_params(wildcards.version)


def get_source_state(wildcards):
    return PLAN.source_state(wildcards.scene)


def get_tuning_args(wildcards):
    return PLAN.tuning_args(wildcards.version)


def get_training_geometry(wildcards):
    return PLAN.training_geometry(PLAN.version(wildcards.version))


def get_inference_geometry(wildcards):
    return PLAN.inference_geometry(PLAN.version(wildcards.version))


def get_nvs_model(wildcards):
    return PLAN.nvs_model(wildcards.version, wildcards.arm)


def get_eval_profile(wildcards):
    return PLAN.render_profiles[PLAN.version(wildcards.version).eval_profile]


def get_resolved_version_config(wildcards):
    return PLAN.resolved_version_config(wildcards.version)


def get_scene_fingerprints(wildcards):
    return PLAN.scene_fingerprints(wildcards.version)


# ---- resources (hi4dfix.resources via the plan) ------------------------------------------------


def get_materialize_runtime(wildcards, attempt):
    return PLAN.materialize_runtime(wildcards.scene, attempt)


def get_render_runtime(wildcards, attempt):
    return PLAN.render_runtime(wildcards.profile, wildcards.scene, attempt)


def get_nvs_mem_mb(wildcards, attempt):
    return PLAN.nvs_mem_mb(wildcards.arm, wildcards.scene, attempt)


def get_nvs_runtime(wildcards, attempt):
    return PLAN.nvs_runtime(wildcards.version, wildcards.arm, wildcards.scene, attempt)


def get_difix_eval_mem_mb(wildcards, attempt):
    return PLAN.difix_eval_mem_mb(wildcards.version, attempt)


def get_difix_eval_runtime(wildcards, attempt):
    return PLAN.difix_eval_runtime(wildcards.version, attempt)


# ---- ablation grids ------------------------------------------------------------------------------


def get_grid(wildcards):
    return PLAN.grids[wildcards.grid]


def get_grid_tuned_csvs(wildcards):
    return PLAN.grid_tuned_csvs(wildcards.grid)


def get_grid_eval_csvs(wildcards):
    return PLAN.grid_eval_csvs(wildcards.grid)


def get_grid_provenance(wildcards):
    return PLAN.grid_provenance(wildcards.grid)
