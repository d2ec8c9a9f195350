# Glue between the rules and the study's plan (hi4dfix.plan: paths, owners of shared work, resources,
# built in the Snakefile from the validated config): the start and end handlers, wildcard constraints
# and one-line get_* functions. The plan reaches a version only through the reserved-scene policy
# check, so a version that breaks it fails at DAG build, before any job runs, naming it and the scene.

import shlex
import sys
import time

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

from hi4dfix.logs import failed_job_reports
from hi4dfix.plan import one_of
from hi4dfix import resources as COSTS
from hi4dfix.arms import CONTROL
from hi4dfix.report.summary import run_summary

PATHS = PLAN.paths
RUN_STARTED = time.time()  # the end-of-run summary shows the delta tables made since
if (PROBLEM := PLAN.environment_problem()) is not None:
    raise WorkflowError(PROBLEM)
MISSING_WEIGHTS = PLAN.missing_weights()
if MISSING_WEIGHTS is not None:
    logger.warning(MISSING_WEIGHTS)


onstart:
    if MISSING_WEIGHTS is not None:
        raise WorkflowError(MISSING_WEIGHTS)


onsuccess:  # one screenful: the mean rows of the delta tables this run made, where tables and report are
    print(run_summary(PATHS.results, PLAN.version_names, since=RUN_STARTED), end="")


onerror:
    # Snakemake names a failed job's log but not what it says: its last error line, on the console
    for report in failed_job_reports(log):
        print(report, file=sys.stderr)


# The Python that runs Snakemake runs the `python -m` commands of shell jobs (a bare `python` may be
# another one), except in a conda or container environment, whose own runs them (as `script:` does).
OWN_PYTHON = {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER} & set(workflow.deployment_settings.deployment_method)
PYTHON = "python" if OWN_PYTHON else shlex.quote(sys.executable)
# A GPU rule's gpu resource: only where this machine has a GPU; a profile may set it (Slurm's does).
GPU = PLAN.gpu_resources()


wildcard_constraints:
    scene=one_of(PLAN.scenes),
    version=one_of(PLAN.version_names),
    profile=one_of(PLAN.render_profiles),
    arm=one_of(PLAN.arms),
    grid=one_of(PLAN.grids),
    preset="tiny",


def get_sequence_index_files(wildcards):
    return PLAN.sequence_index_files(wildcards.scene)


def get_triplets(wildcards):
    return PLAN.triplets(wildcards.version)


def get_triplet_inputs(wildcards):
    return PLAN.triplet_inputs(wildcards.version)


def get_content_check_inputs(wildcards):
    return PLAN.content_check_inputs(wildcards.version)


def get_base_input(wildcards):
    return PLAN.base_input()


def get_control_model_input(wildcards):
    return PLAN.control_inputs(wildcards.version, "model")


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
    return PLAN.eval_renders(wildcards.version)


def get_control_train_logs(wildcards):
    return PLAN.control_inputs(wildcards.version, "train_log")


def get_provenance_inputs(wildcards):
    return PLAN.provenance_inputs(wildcards.version)


def get_version(wildcards):  # the policy-checked version (hi4dfix.study.Version) of the job
    return PLAN.version(wildcards.version)


def get_version_params(wildcards):
    return PLAN.version_params(wildcards.version)


def get_sequence_identity(wildcards):
    return PLAN.sequence_identity(wildcards.scene)


def get_source_state(wildcards):
    return PLAN.source_state(wildcards.scene)


def get_tuning_args(wildcards):
    return PLAN.tuning_args(wildcards.version)


def get_inference_geometry(wildcards):
    return PLAN.inference_geometry(PLAN.version(wildcards.version))


def get_nvs_model(wildcards):  # a DiFix spec, or an extra arm's (difix.extra_arms)
    return PLAN.arm_model_param(wildcards.version, wildcards.arm)


def get_eval_profile(wildcards):
    return PLAN.render_profiles[PLAN.version(wildcards.version).eval_profile]


def get_resolved_version_config(wildcards):
    return PLAN.resolved_version_config(wildcards.version)


def get_scene_fingerprints(wildcards):
    return PLAN.scene_fingerprints(wildcards.version)


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


def get_grid(wildcards):
    return PLAN.grids[wildcards.grid]


def get_grid_tuned_csvs(wildcards):
    return PLAN.grid_tuned_csvs(wildcards.grid)


def get_grid_eval_csvs(wildcards):
    return PLAN.grid_eval_csvs(wildcards.grid)


def get_grid_provenance(wildcards):
    return PLAN.grid_provenance(wildcards.grid)
