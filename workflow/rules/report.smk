# Report stage: the items of Snakemake's self-contained HTML report, per study version.
#
#   snakemake --report results/v0/report.html results/v0/deltas.csv
#
# The delta table depends on these items (`delta_inputs`), so the report of its DAG holds them
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
        provenance=f"{RESULTS}/{{version}}/provenance.json",
    output:
        report(
            report_path("{version}", "card.html"),
            caption="../report/card.rst",
            category=CATEGORY_CARD,
            subcategory="{version}",
            labels={"item": "version card"},
        ),
    params:
        version=version_params,
        reserved=sorted(STUDY.reserved_scenes),
        render_profile=lambda wildcards: STUDY.render_profiles[version_profile(wildcards)],
        difix=lambda wildcards: {
            "base": config["difix"]["base"],
            "preset": config["difix"]["preset"],
            "processing size, tuning": training_geometry(wildcards),
            "processing size, DiFix arms": inference_geometry(wildcards),
            "control arm": (
                f"on: the base tuned with this version's settings on {control_triplets()}"
                if CONTROL_ON
                else "off (difix.control.enabled: false)"
            ),
        },
    log:
        f"{RESULTS}/logs/version_card/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/version_card/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/version_card.py"


rule metric_charts:
    """Charts of PSNR, SSIM and LPIPS per reserved scene: raw, base and tuned DiFix (and the control
    arm), and their paired differences with bootstrap intervals and verdicts."""
    input:
        unpack(nvs_arm_csvs),
    output:
        report(
            report_path("{version}", "metrics.png"),
            caption="../report/metrics.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "bar charts"},
        ),
    params:
        scenes=lambda wildcards: list(checked_version(wildcards).nvs_eval),
        arms=list(STUDY_ARMS),
        charts=REPORT.get("metric_charts", {}),
        bootstrap=config["stats"],
    log:
        f"{RESULTS}/logs/metric_charts/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/metric_charts/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/metric_charts.py"


rule before_after_views:
    """Held-out views of one reserved scene: raw, base and tuned outputs next to the ground truth."""
    input:
        unpack(scene_arm_csvs),
        renders=lambda wildcards: nvs_scene_inputs(wildcards)["renders"],
    output:
        report(
            report_path("{version}", "before_after/{scene}.png"),
            caption="../report/before_after.rst",
            category=CATEGORY_VIEWS,
            subcategory="{version}",
            labels={"scene": "{scene}"},
        ),
    params:
        views=REPORT.get("before_after", {}),
    log:
        f"{RESULTS}/logs/before_after_views/{{version}}/{{scene}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/before_after_views/{{version}}/{{scene}}.tsv"
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
        triplets=version_triplets,
        model=f"{RESULTS}/{{version}}/difix/model.pkl",
        renders=lambda wildcards: [
            render_path(version_eval_profile(wildcards), scene) for scene in checked_version(wildcards).difix_eval
        ],
    output:
        report(
            report_path("{version}", "gallery.png"),
            caption="../report/gallery.rst",
            category=CATEGORY_GALLERY,
            subcategory="{version}",
            labels={"item": "test triplets"},
        ),
    params:
        gallery=REPORT.get("gallery", {}),
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=inference_geometry,
        # eager: a handful of views never repays the minutes a compilation takes
        inference={**config["difix"]["inference"], "compile": False},
    log:
        f"{RESULTS}/logs/triplet_gallery/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/triplet_gallery/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=1,
    script:
        "../scripts/triplet_gallery.py"


rule loss_curve:
    """The DiFix fine-tuning loss per step, from the tuning job's train_log.csv (and the control arm's)."""
    input:
        tuned=f"{RESULTS}/{{version}}/difix/train_log.csv",
        control=lambda wildcards: [control_train_log(CONTROL_OWNER[wildcards.version])] if CONTROL_ON else [],
    output:
        report(
            report_path("{version}", "train_loss.png"),
            caption="../report/train_loss.rst",
            category=CATEGORY_TRAINING,
            subcategory="{version}",
            labels={"item": "loss curve"},
        ),
    params:
        curve=REPORT.get("loss_curve", {}),
        control=lambda wildcards: control_train_log(CONTROL_OWNER[wildcards.version]) if CONTROL_ON else None,
    log:
        f"{RESULTS}/logs/loss_curve/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/loss_curve/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/loss_curve.py"
