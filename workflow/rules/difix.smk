# DiFix stage: the base model (built here for the embedded default) and per-version tuning.
# Tuning runs through `accelerate launch` with one process per GPU granted to the job.
# Checkpoints live outside the declared outputs so a killed job resumes when it runs again.

import shlex

from hi4dfix.difix import data as difix_data


# ---- processing size: one setting for tuning and the DiFix arms ------------------------------


def training_geometry(wildcards):
    """How the version's tuning run sizes its images (hi4dfix.difix.data.training_geometry)."""
    return difix_data.training_geometry(config["difix"], checked_version(wildcards).tuning)


def inference_geometry(wildcards):
    """Processing size of the version's DiFix arms: the tuning run's unless difix.eval_long_side says otherwise."""
    return difix_data.inference_geometry(config["difix"], checked_version(wildcards).tuning)


rule pretrain_difix_base:
    """Train a tiny base DiFix on out-of-domain synthetic degradations (embedded default only)."""
    output:
        f"{RESULTS}/difix_base/{{preset}}/model.pkl",
    params:
        pretrain=config["difix"]["pretrain"],
        workdir=lambda wildcards: f"{RESULTS}/difix_base/{wildcards.preset}/work",
    log:
        f"{RESULTS}/logs/pretrain_difix_base/{{preset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_difix_base/{{preset}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    script:
        "../scripts/pretrain_difix_base.py"


def tuning_args(wildcards):
    """Command-line options of hi4dfix.difix.train: the version's tuning block, key for key."""
    options = {key: value for key, value in checked_version(wildcards).tuning.items() if value is not None}
    options["long_side"] = training_geometry(wildcards)["long_side"]
    if config["difix"]["hub_cache_dir"]:
        options["hub_cache_dir"] = config["difix"]["hub_cache_dir"]
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())


rule tune_difix:
    """Fine-tune DiFix on the version's training triplets, starting from difix.base."""
    input:
        triplets=f"{RESULTS}/{{version}}/triplets.json",
        base=difix_base_input,
    output:
        model=f"{RESULTS}/{{version}}/difix/model.pkl",
        train_log=f"{RESULTS}/{{version}}/difix/train_log.csv",
    params:
        base=difix_base_spec(),
        workdir=lambda wildcards: f"{RESULTS}/{wildcards.version}/difix/work",
        args=tuning_args,
    log:
        f"{RESULTS}/logs/tune_difix/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune_difix/{{version}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    shell:
        "python -m hi4dfix.difix.launch --gpus {resources.gpu} --"
        " --triplets {input.triplets} --base {params.base} --output {output.model}"
        " --output-dir {params.workdir} {params.args} > {log} 2>&1"
        " && cp {params.workdir}/train_log.csv {output.train_log}"
