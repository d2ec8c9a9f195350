# Report stage: the items of Snakemake's self-contained HTML report, per study version.
#
#   snakemake --report results/v0/report.html results/v0/deltas.csv
#
# The delta table depends on these items (the plan's `delta_inputs`), so the report of its DAG holds them
# all. Every item is made from the config or from earlier stages' outputs.

from hi4dfix.report import (
    CATEGORY_CARD,
    CATEGORY_GALLERY,
    CATEGORY_METRICS,
    CATEGORY_TRAINING,
    CATEGORY_VIEWS,
)


report: "../report/workflow.rst"


# Optional `report:` block of the config: dataclass fields of hi4dfix.report.figures / .gallery.
REPORT = config.get("report", {})


rule version_card:
    """The version's objective, splits, decisions, expected outputs and settings, from the config,
    and the provenance of its numbers."""
    input:
        provenance=PATHS.provenance_inputs("{version}"),
        tuned=PATHS.model("{version}"),
    output:
        report(
            PATHS.card("{version}"),
            caption="../report/card.rst",
            category=CATEGORY_CARD,
            subcategory="{version}",
            labels={"item": "version card"},
        ),
    params:
        version=get_version_params,
        reserved=PLAN.reserved_scenes,
        render_profile=lambda wildcards: PLAN.render_profiles[get_version(wildcards).render_profile],
        difix=lambda wildcards: PLAN.card_difix(wildcards.version),
        workdir=lambda wildcards: PATHS.workdir(wildcards.version),
    log:
        PATHS.log("version_card", "{version}"),
    benchmark:
        PATHS.benchmark("version_card", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/version_card.py"


rule metric_charts:
    """Charts of each metric of the delta table (whole frame and people, the primary endpoint first) per
    reserved scene: raw, base and tuned DiFix (and the control arm), and their paired differences with
    intervals and verdicts."""
    input:
        unpack(get_nvs_arm_csvs),
        seed_csvs=lambda wildcards: PLAN.seed_csv_list(wildcards.version),
    output:
        report(
            PATHS.metric_charts("{version}"),
            caption="../report/metrics.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "bar charts"},
        ),
    params:
        scenes=lambda wildcards: list(get_version(wildcards).nvs_eval),
        arms=list(PLAN.arms),
        seeds=lambda wildcards: list(PLAN.seeds(wildcards.version)),
        seed_csvs=lambda wildcards: PLAN.seed_arm_csvs(wildcards.version),
        charts=REPORT.get("metric_charts", {}),
        bootstrap=config["stats"],
    log:
        PATHS.log("metric_charts", "{version}"),
    benchmark:
        PATHS.benchmark("metric_charts", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/metric_charts.py"


rule before_after_views:
    """Held-out views of one reserved scene: every arm's outputs next to the ground truth."""
    input:
        unpack(get_scene_arm_csvs),
        renders=lambda wildcards: get_nvs_scene_inputs(wildcards)["renders"],
    output:
        report(
            PATHS.before_after("{version}", "{scene}"),
            caption="../report/before_after.rst",
            category=CATEGORY_VIEWS,
            subcategory="{version}",
            labels={"scene": "{scene}"},
        ),
    params:
        views=REPORT.get("before_after", {}),
        arms=PLAN.arms,
    log:
        PATHS.log("before_after_views", "{version}", "{scene}"),
    benchmark:
        PATHS.benchmark("before_after_views", "{version}", "{scene}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/before_after_views.py"


rule triplet_gallery:
    """A few DiFix test triplets (image, ref_image, target_image) with the tuned model's output."""
    input:
        triplets=get_triplets,
        model=PATHS.model("{version}"),
        renders=get_eval_renders,
    output:
        report(
            PATHS.gallery("{version}"),
            caption="../report/gallery.rst",
            category=CATEGORY_GALLERY,
            subcategory="{version}",
            labels={"item": "test triplets"},
        ),
    params:
        gallery=REPORT.get("gallery", {}),
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        # eager: a handful of views never repays the minutes a compilation takes
        inference={**config["difix"]["inference"], "compile": False},
    log:
        PATHS.log("triplet_gallery", "{version}"),
    benchmark:
        PATHS.benchmark("triplet_gallery", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        **GPU,
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/triplet_gallery.py"


rule loss_curve:
    """The DiFix fine-tuning loss per step, from the tuning job's train_log.csv (and the control arm's)."""
    input:
        tuned=PATHS.train_log("{version}"),
        control=get_control_train_logs,
    output:
        report(
            PATHS.loss_curve("{version}"),
            caption="../report/train_loss.rst",
            category=CATEGORY_TRAINING,
            subcategory="{version}",
            labels={"item": "loss curve"},
        ),
    params:
        curve=REPORT.get("loss_curve", {}),
        control=lambda wildcards: PLAN.control_train_log(wildcards.version),
    log:
        PATHS.log("loss_curve", "{version}"),
    benchmark:
        PATHS.benchmark("loss_curve", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/loss_curve.py"
