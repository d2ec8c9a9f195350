# DiFix stage: the base model (built here for the embedded default), per-version tuning, and the
# control arm (difix.control): the same tuning on the base's own out-of-domain data.
# Tuning runs through `accelerate launch` with one process per GPU granted to the job.
# Checkpoints live outside the declared outputs so a killed job resumes when it runs again: under
# results/{version}/difix/work/, a folder per fingerprint of training data and settings, which
# also keeps its run's model.pkl and train log, so a failed rerun leaves the last good model there.

from hi4dfix.difix.control import OOD_TRIPLETS_NAME
from hi4dfix.report import CATEGORY_METRICS


rule pretrain_difix_base:
    """Train a tiny base DiFix on out-of-domain multi-view renders (embedded default only), and
    score it against the raw renders of out-of-domain test scenes."""
    output:
        model=f"{RESULTS}/difix_base/{{preset}}/model.pkl",
        test_views=f"{RESULTS}/difix_base/{{preset}}/ood_test.csv",
        test_summary=report(
            f"{RESULTS}/difix_base/{{preset}}/ood_test.md",
            caption="../report/ood_test.rst",
            category=CATEGORY_METRICS,
            subcategory="base model",
            labels={"item": "base model on out-of-domain test scenes"},
        ),
        # its own training data, in the schema tuning reads: what the control arm continues on
        ood_triplets=f"{RESULTS}/difix_base/{{preset}}/{OOD_TRIPLETS_NAME}",
    params:
        pretrain=config["difix"]["pretrain"],
        workdir=lambda wildcards: f"{RESULTS}/difix_base/{wildcards.preset}/work",
    log:
        f"{RESULTS}/logs/pretrain_difix_base/{{preset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_difix_base/{{preset}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    script:
        "../scripts/pretrain_difix_base.py"


rule tune_difix:
    """Fine-tune DiFix on the version's training triplets, starting from difix.base."""
    input:
        triplets=version_triplets,
        base=difix_base_input,
    output:
        model=f"{RESULTS}/{{version}}/difix/model.pkl",
        train_log=f"{RESULTS}/{{version}}/difix/train_log.csv",
    params:
        python=PYTHON,
        base=difix_base_spec(),
        workdir=lambda wildcards: f"{RESULTS}/{wildcards.version}/difix/work",
        args=tuning_args,
    log:
        f"{RESULTS}/logs/tune_difix/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune_difix/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    shell:
        TUNE_DIFIX_SHELL


# The control arm: tune_difix's command on the base's own out-of-domain triplets (control_triplets:
# difix.control.triplets, or the pretraining's), with the version's tuning settings and processing
# size, into its own folder. Requested only when difix.control.enabled (nvs_arm_csvs, evaluate_difix).
rule check_control_content:
    """Refuse control triplets holding a reserved scene's frames (hi4dfix.fingerprint, on the whole frame):
    tune_control needs this rule's record."""
    input:
        triplets=control_triplets_input,
        reserved=lambda wildcards: [scene_path(s) for s in sorted(STUDY.reserved_scenes)],
    output:
        f"{RESULTS}/difix_control/content_check.json",
    params:
        reserved=sorted(STUDY.reserved_scenes),
    log:
        f"{RESULTS}/logs/check_control_content/content_check.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_control_content/content_check.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/check_control_content.py"


use rule tune_difix as tune_control with:
    input:
        triplets=control_triplets_input,
        base=difix_base_input,
        content_check=f"{RESULTS}/difix_control/content_check.json",
    output:
        model=control_model_path("{version}"),
        train_log=control_train_log("{version}"),
    params:
        workdir=lambda wildcards: f"{RESULTS}/{wildcards.version}/difix/{CONTROL}/work",
    log:
        f"{RESULTS}/logs/tune_control/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune_control/{{version}}.tsv"
