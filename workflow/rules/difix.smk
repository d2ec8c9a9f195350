# DiFix stage: the base model (built here for the embedded default), per-version tuning, and the
# control arm (difix.control): the same tuning on fresh out-of-domain data.
# Tuning runs through `accelerate launch` with one process per GPU granted to the job.
# Checkpoints live outside the declared outputs so a killed job resumes when it runs again: under
# results/{version}/difix/work/, a folder per fingerprint of training data and settings, which
# also keeps its run's model.pkl and train log, so a failed rerun leaves the last good model there.

from hi4dfix.report import CATEGORY_METRICS

# The command of a DiFix tuning job, shared by the jobs that tune (tune_difix; the control arm).
# It reads input.triplets, params.python (PYTHON), params.base, params.workdir, params.args
# (the plan's tuning_args), params.gpus (the job's gpu resource, 0 without one), output.model,
# output.train_log and log. Each fingerprint of data and settings trains in its own folder under
# params.workdir, which keeps its model.pkl (hi4dfix.difix.train).
TUNE_DIFIX_SHELL = (
    "{params.python} -m hi4dfix.difix.launch --gpus {params.gpus} --"
    " --triplets {input.triplets:q} --base {params.base:q} --output {output.model:q}"
    " --output-train-log {output.train_log:q} --output-dir {params.workdir:q} --run-per-fingerprint true"
    # the log keeps everything; the console gets it too (the trainer's few lines and its progress)
    " {params.args} 2>&1 | tee {log:q}"
    # the compute-time stamp of the model (hi4dfix.stamps): code state, settings and inputs now
    " && {params.python} -m hi4dfix.stamps --output {output.model:q} --inputs {input:q}"
    " --settings={params.args:q} >> {log:q}"
)


rule pretrain_difix_base:
    """Train a tiny base DiFix on out-of-domain multi-view renders (embedded default only), and
    score it against the raw renders of out-of-domain test scenes."""
    output:
        model=PATHS.base_model("{preset}"),
        stamp=PATHS.stamp(PATHS.base_model("{preset}")),
        test_views=PATHS.ood_test("{preset}"),
        test_summary=report(
            PATHS.ood_test("{preset}", "md"),
            caption="../report/ood_test.rst",
            category=CATEGORY_METRICS,
            subcategory="base model",
            labels={"item": "base model on out-of-domain test scenes"},
        ),
        # its own training data, in the schema tuning reads: what the control arm continues on
        ood_triplets=PATHS.ood_triplets("{preset}"),
    params:
        pretrain=config["difix"]["pretrain"],
        workdir=lambda wildcards: PATHS.base_workdir(wildcards.preset),
    log:
        PATHS.log("pretrain_difix_base", "{preset}"),
    benchmark:
        PATHS.benchmark("pretrain_difix_base", "{preset}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        **GPU,
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/pretrain_difix_base.py"


rule tune_difix:
    """Fine-tune DiFix on the version's training triplets, starting from difix.base."""
    input:
        triplets=get_triplets,
        base=get_base_input,
    output:
        model=PATHS.model("{version}"),
        train_log=PATHS.train_log("{version}"),
        stamp=PATHS.stamp(PATHS.model("{version}")),
    params:
        python=PYTHON,
        base=PLAN.base_spec,
        workdir=lambda wildcards: PATHS.workdir(wildcards.version),
        args=get_tuning_args,
        gpus=lambda wildcards, resources: getattr(resources, "gpu", 0),
    log:
        PATHS.log("tune_difix", "{version}"),
    benchmark:
        PATHS.benchmark("tune_difix", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        **GPU,
        mem_mb=COSTS.TUNE_MEM_MB,  # measured by PSS at long side 1024 (hi4dfix.resources)
        runtime=720,
    shell:
        TUNE_DIFIX_SHELL


# The control arm: tune_difix's command on out-of-domain triplets the base has not seen (PLAN.control_triplets:
# difix.control.triplets, or control_triplets' fresh ones), with the version's tuning settings, schedule
# and processing size, into its own folder. Requested only when difix.control.enabled (PLAN.nvs_arm_csvs,
# evaluate_difix).
if PLAN.control_made_here:

    rule control_triplets:
        """Render fresh out-of-domain triplets for the control arm (hi4dfix.difix.control): procedural
        scenes, no people, through the study's fit-and-render path at the study's processing size."""
        output:
            PLAN.control_triplets,
        params:
            spec=PLAN.control_data(),
        log:
            PATHS.log("control_triplets", "ood"),
        benchmark:
            PATHS.benchmark("control_triplets", "ood")
        conda:
            "../envs/hi4dfix.yaml"
        threads: 2
        resources:
            **GPU,
            mem_mb=COSTS.CONTROL_TRIPLETS_MEM_MB,  # measured by PSS (hi4dfix.resources)
            runtime=120,
        script:
            "../scripts/control_triplets.py"


rule check_control_content:
    """Refuse control triplets holding a reserved scene's frames (hi4dfix.fingerprint, on the whole frame):
    tune_control needs this rule's record."""
    input:
        triplets=get_control_triplets,
        reserved=[PATHS.scene(s) for s in PLAN.reserved_scenes],
    output:
        PATHS.control_content_check(),
    params:
        reserved=PLAN.reserved_scenes,
    log:
        PATHS.log("check_control_content", "content_check"),
    benchmark:
        PATHS.benchmark("check_control_content", "content_check")
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
        triplets=get_control_triplets,
        base=get_base_input,
        content_check=PATHS.control_content_check(),
    output:
        model=PATHS.model("{version}", CONTROL),
        train_log=PATHS.train_log("{version}", CONTROL),
        stamp=PATHS.stamp(PATHS.model("{version}", CONTROL)),
    params:
        workdir=lambda wildcards: PATHS.workdir(wildcards.version, CONTROL),
    log:
        PATHS.log("tune_control", "{version}"),
    benchmark:
        PATHS.benchmark("tune_control", "{version}")


# Replicated training (tuning.seeds): each seed after the first trains once, the tuned and the control arm
# alike, into its seed folder; everything upstream (triplets, base, content checks) is shared. The first
# seed's runs are tune_difix's and tune_control's (hi4dfix.plan: seed_dir).
use rule tune_difix as tune_difix_seed with:
    output:
        model=PATHS.model("{version}", seed=r"{seed,\d+}"),
        train_log=PATHS.train_log("{version}", seed="{seed}"),
        stamp=PATHS.stamp(PATHS.model("{version}", seed="{seed}")),
    params:
        python=PYTHON,
        base=PLAN.base_spec,
        workdir=lambda wildcards: PATHS.workdir(wildcards.version, seed=wildcards.seed),
        args=lambda wildcards: PLAN.tuning_args(wildcards.version, int(wildcards.seed)),
        gpus=lambda wildcards, resources: getattr(resources, "gpu", 0),
    log:
        PATHS.log("tune_difix", "{version}", "seed{seed}"),
    benchmark:
        PATHS.benchmark("tune_difix", "{version}", "seed{seed}")


use rule tune_control as tune_control_seed with:
    output:
        model=PATHS.model("{version}", CONTROL, r"{seed,\d+}"),
        train_log=PATHS.train_log("{version}", CONTROL, "{seed}"),
        stamp=PATHS.stamp(PATHS.model("{version}", CONTROL, "{seed}")),
    params:
        python=PYTHON,
        base=PLAN.base_spec,
        workdir=lambda wildcards: PATHS.workdir(wildcards.version, CONTROL, wildcards.seed),
        args=lambda wildcards: PLAN.tuning_args(wildcards.version, int(wildcards.seed)),
        gpus=lambda wildcards, resources: getattr(resources, "gpu", 0),
    log:
        PATHS.log("tune_control", "{version}", "seed{seed}"),
    benchmark:
        PATHS.benchmark("tune_control", "{version}", "seed{seed}")
