# Evaluation stage: DiFix on its internal test split, downstream NVS on the reserved scenes
# (arms raw, base and tuned, and control when difix.control is on), and their delta tables:
# tuned vs base, tuned vs raw and base vs raw (with control: tuned vs control, control vs base),
# with paired cluster-bootstrap intervals and verdicts (config block `stats`).

from hi4dfix.report import CATEGORY_METRICS


rule evaluate_difix:
    """Metrics of raw image, base DiFix and tuned DiFix (and the control arm's) against target_image on
    the test triplets."""
    input:
        triplets=get_triplets,
        base=get_base_input,
        tuned=PATHS.model("{version}"),
        control=get_control_model_input,
        scenes=lambda wildcards: [PATHS.scene(s) for s in get_version(wildcards).difix_eval],
    output:
        PATHS.eval_csv("{version}"),
        stamp=PATHS.stamp(PATHS.eval_csv("{version}")),
    params:
        base=PLAN.base_spec,
        control=lambda wildcards: PLAN.control_model(wildcards.version),
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=PLAN.compile_cache_dir,
        # what decides the numbers (metrics.ssim, ...): a change reruns; chunk_views changes none
        metrics={key: value for key, value in config["metrics"].items() if key != "chunk_views"},
    log:
        PATHS.log("evaluate_difix", "{version}"),
    benchmark:
        PATHS.benchmark("evaluate_difix", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        **GPU,
        # one chunk of views and the DiFix models in memory; the arms x the test views (hi4dfix.resources)
        mem_mb=get_difix_eval_mem_mb,
        runtime=get_difix_eval_runtime,
    script:
        "../scripts/evaluate_difix.py"


rule evaluate_nvs:
    """Novel-view metrics of one arm on one reserved scene, a row per frame and camera."""
    input:
        unpack(get_nvs_scene_inputs),
        model=get_nvs_model_input,
    output:
        PATHS.nvs_csv("{version}", "{arm}", "{scene}"),
        stamp=PATHS.stamp(PATHS.nvs_csv("{version}", "{arm}", "{scene}")),
    params:
        model=get_nvs_model,
        mode=lambda wildcards: get_version(wildcards).nvs["mode"],
        nvs=lambda wildcards: dict(get_version(wildcards).nvs),
        profile=get_eval_profile,
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=PLAN.compile_cache_dir,
        # what decides the numbers (metrics.ssim, ...): a change reruns; chunk_views changes none
        metrics={key: value for key, value in config["metrics"].items() if key != "chunk_views"},
    log:
        PATHS.log("evaluate_nvs", "{version}", "{arm}", "{scene}"),
    benchmark:
        PATHS.benchmark("evaluate_nvs", "{version}", "{arm}", "{scene}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        **GPU,
        # one chunk of views in memory, whatever the frames; time per held-out view (hi4dfix.resources)
        mem_mb=get_nvs_mem_mb,
        runtime=get_nvs_runtime,
    script:
        "../scripts/evaluate_nvs.py"


rule eval_deltas:
    """The internal evaluation's comparisons with bootstrap intervals and verdicts, as CSV and markdown."""
    input:
        PATHS.eval_csv("{version}"),
    output:
        csv=report(
            PATHS.eval_deltas("{version}"),
            caption="../report/eval_deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "internal evaluation (CSV download)"},
        ),
        markdown=PATHS.eval_deltas("{version}", "md"),
        html=report(
            PATHS.eval_deltas("{version}", "html"),
            caption="../report/eval_deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "internal evaluation"},
        ),
        stamp=PATHS.stamp(PATHS.eval_deltas("{version}")),
    params:
        bootstrap=config["stats"],
        title=lambda wildcards: f"{wildcards.version}: DiFix internal evaluation on "
        + ", ".join(get_version(wildcards).difix_eval),
    log:
        PATHS.log("eval_deltas", "{version}"),
    benchmark:
        PATHS.benchmark("eval_deltas", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/eval_deltas.py"


rule delta_table:
    """Raw, base and tuned DiFix (and the control arm) compared pairwise per reserved scene and metric,
    with bootstrap intervals and verdicts, as CSV and markdown."""
    input:
        unpack(get_delta_inputs),
    output:
        csv=report(
            PATHS.deltas("{version}"),
            caption="../report/deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "delta table (CSV download)"},
        ),
        markdown=PATHS.deltas("{version}", "md"),
        html=report(
            PATHS.deltas("{version}", "html"),
            caption="../report/deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "delta table"},
        ),
        stamp=PATHS.stamp(PATHS.deltas("{version}")),
        # sealed after the tables, which it hashes, with the stamps it gathers (hi4dfix.provenance)
        provenance=PATHS.provenance("{version}"),
    params:
        scenes=lambda wildcards: list(get_version(wildcards).nvs_eval),
        arms=list(PLAN.arms),
        bootstrap=config["stats"],
        title=lambda wildcards: f"{wildcards.version}: novel views of the reserved scenes",
        nvs_mode=lambda wildcards: get_version(wildcards).nvs["mode"],
    log:
        PATHS.log("delta_table", "{version}"),
    benchmark:
        PATHS.benchmark("delta_table", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/delta_table.py"


rule versions_table:
    """Every version's mean-row comparisons (deltas, intervals, verdicts) in one table."""
    input:
        get_all_deltas,
    output:
        PATHS.versions_table(),
    params:
        versions=list(PLAN.version_names),
        parents=PLAN.parents(),
    log:
        PATHS.log("versions_table"),
    benchmark:
        PATHS.benchmark("versions_table")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/versions_table.py"
