# Evaluation stage: DiFix on its internal test split, downstream NVS on the reserved scenes
# (arms raw, base and tuned, control when difix.control is on, and the extra arms of
# difix.extra_arms), and their delta tables: tuned vs base, tuned vs raw and base vs raw (with
# control: tuned vs control, control vs base; per extra arm: tuned vs ARM, ARM vs raw),
# with paired cluster-bootstrap intervals and verdicts (config block `stats`).

from hi4dfix.metrics import decisive_settings
from hi4dfix.report import CATEGORY_METRICS


rule evaluate_difix:
    """Metrics of raw image, base DiFix and tuned DiFix (and the control and extra arms') against
    target_image on the test triplets."""
    input:
        triplets=get_triplets,
        base=get_base_input,
        tuned=PATHS.model("{version}"),
        control=get_control_model_input,
        extra_arms=PLAN.extra_arm_inputs(),
        scenes=lambda wildcards: [PATHS.scene(s) for s in get_version(wildcards).difix_eval],
    output:
        PATHS.eval_csv("{version}"),
        stamp=PATHS.stamp(PATHS.eval_csv("{version}")),
    params:
        base=PLAN.base_spec,
        control=lambda wildcards: PLAN.control_model(wildcards.version),
        extra_arms=PLAN.extra_arm_params(),
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=PLAN.compile_cache_dir,
        # what decides the numbers (metrics.ssim, ...): a change reruns (hi4dfix.metrics.decisive_settings)
        metrics=decisive_settings(config["metrics"]),
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
        # what decides the numbers (metrics.ssim, ...): a change reruns (hi4dfix.metrics.decisive_settings)
        metrics=decisive_settings(config["metrics"]),
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


# A further training seed (tuning.seeds after the first): its tuned and control models through the same
# evaluations, into its seed folders; raw, base, renders and triplets are shared.
use rule evaluate_difix as evaluate_difix_seed with:
    input:
        triplets=get_triplets,
        base=get_base_input,
        tuned=PATHS.model("{version}", seed="{seed}"),
        control=lambda wildcards: PLAN.control_inputs(wildcards.version, "model", int(wildcards.seed)),
        scenes=lambda wildcards: [PATHS.scene(s) for s in get_version(wildcards).difix_eval],
    output:
        PATHS.eval_csv("{version}", r"{seed,\d+}"),
        stamp=PATHS.stamp(PATHS.eval_csv("{version}", "{seed}")),
    params:
        base=PLAN.base_spec,
        control=lambda wildcards: PLAN.control_model(wildcards.version, int(wildcards.seed)),
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=PLAN.compile_cache_dir,
        metrics={key: value for key, value in config["metrics"].items() if key != "chunk_views"},
    log:
        PATHS.log("evaluate_difix", "{version}", "seed{seed}"),
    benchmark:
        PATHS.benchmark("evaluate_difix", "{version}", "seed{seed}")


use rule evaluate_nvs as evaluate_nvs_seed with:
    input:
        unpack(get_nvs_scene_inputs),
        model=lambda wildcards: PLAN.nvs_model_input(wildcards.version, wildcards.arm, int(wildcards.seed)),
    output:
        PATHS.nvs_csv("{version}", "{arm}", "{scene}", r"{seed,\d+}"),
        stamp=PATHS.stamp(PATHS.nvs_csv("{version}", "{arm}", "{scene}", "{seed}")),
    params:
        model=lambda wildcards: PLAN.nvs_model(wildcards.version, wildcards.arm, int(wildcards.seed)),
        mode=lambda wildcards: get_version(wildcards).nvs["mode"],
        nvs=lambda wildcards: dict(get_version(wildcards).nvs),
        profile=get_eval_profile,
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=get_inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=PLAN.compile_cache_dir,
        metrics={key: value for key, value in config["metrics"].items() if key != "chunk_views"},
    log:
        PATHS.log("evaluate_nvs", "{version}", "{arm}", "seed{seed}", "{scene}"),
    benchmark:
        PATHS.benchmark("evaluate_nvs", "{version}", "{arm}", "seed{seed}", "{scene}")


rule eval_deltas:
    """The internal evaluation's comparisons with bootstrap intervals and verdicts, as CSV and markdown."""
    input:
        lambda wildcards: list(PLAN.eval_csvs(wildcards.version).values()),
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
        seeds=lambda wildcards: list(PLAN.eval_csvs(wildcards.version)),
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
        seeds=lambda wildcards: list(PLAN.seeds(wildcards.version)),
        seed_csvs=lambda wildcards: PLAN.seed_arm_csvs(wildcards.version),
        eval_csvs=lambda wildcards: PLAN.eval_csvs(wildcards.version),
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
