# Evaluation stage: DiFix on its internal test split, downstream NVS on the reserved scenes
# (arms raw, base and tuned, and control when difix.control is on), and their delta tables:
# tuned vs base, tuned vs raw and base vs raw (with control: tuned vs control, control vs base),
# with paired cluster-bootstrap intervals and verdicts (config block `stats`).

from hi4dfix.report import CATEGORY_METRICS


rule evaluate_difix:
    """Metrics of raw image, base DiFix and tuned DiFix (and the control arm's) against target_image on
    the test triplets."""
    input:
        triplets=version_triplets,
        base=difix_base_input,
        tuned=f"{RESULTS}/{{version}}/difix/model.pkl",
        control=control_model_input,
        scenes=lambda wildcards: [scene_path(s) for s in checked_version(wildcards).difix_eval],
    output:
        f"{RESULTS}/{{version}}/difix/eval.csv",
    params:
        base=difix_base_spec(),
        control=lambda wildcards: control_model_path(CONTROL_OWNER[wildcards.version]) if CONTROL_ON else None,
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=compile_cache_dir(),
    log:
        f"{RESULTS}/logs/evaluate_difix/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_difix/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 2
    resources:
        # one chunk of views and the DiFix models in memory; the arms x the test views (common.smk)
        mem_mb=difix_eval_mem_mb,
        runtime=difix_eval_runtime,
        gpu=1,
    script:
        "../scripts/evaluate_difix.py"


rule evaluate_nvs:
    """Novel-view metrics of one arm on one reserved scene, a row per frame and camera."""
    input:
        unpack(nvs_scene_inputs),
        model=nvs_model_input,
    output:
        f"{RESULTS}/{{version}}/nvs/{{arm}}/{{scene}}.csv",
    params:
        model=nvs_model_spec,
        mode=lambda wildcards: checked_version(wildcards).nvs["mode"],
        nvs=lambda wildcards: dict(checked_version(wildcards).nvs),
        profile=lambda wildcards: STUDY.render_profiles[version_eval_profile(wildcards)],
        hub_cache_dir=config["difix"]["hub_cache_dir"],
        size=inference_geometry,
        inference=config["difix"]["inference"],
        compile_cache_dir=compile_cache_dir(),
    log:
        f"{RESULTS}/logs/evaluate_nvs/{{version}}/{{arm}}/{{scene}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_nvs/{{version}}/{{arm}}/{{scene}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        # one chunk of views in memory, whatever the frames; time per held-out view (common.smk)
        mem_mb=nvs_mem_mb,
        runtime=nvs_runtime,
        gpu=1,
    script:
        "../scripts/evaluate_nvs.py"


rule eval_deltas:
    """The internal evaluation's comparisons with bootstrap intervals and verdicts, as CSV and markdown."""
    input:
        f"{RESULTS}/{{version}}/difix/eval.csv",
    output:
        csv=report(
            f"{RESULTS}/{{version}}/difix/eval_deltas.csv",
            caption="../report/eval_deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "internal evaluation (CSV)"},
        ),
        markdown=f"{RESULTS}/{{version}}/difix/eval_deltas.md",
    params:
        bootstrap=config["stats"],
        title=lambda wildcards: f"{wildcards.version}: DiFix internal evaluation on "
        + ", ".join(checked_version(wildcards).difix_eval),
    log:
        f"{RESULTS}/logs/eval_deltas/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_deltas/{{version}}.tsv"
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
        unpack(delta_inputs),
    output:
        csv=report(
            f"{RESULTS}/{{version}}/deltas.csv",
            caption="../report/deltas.rst",
            category=CATEGORY_METRICS,
            subcategory="{version}",
            labels={"item": "delta table (CSV)"},
        ),
        markdown=f"{RESULTS}/{{version}}/deltas.md",
    params:
        scenes=lambda wildcards: list(checked_version(wildcards).nvs_eval),
        arms=list(STUDY_ARMS),
        bootstrap=config["stats"],
        title=lambda wildcards: f"{wildcards.version}: novel views of the reserved scenes",
        nvs_mode=lambda wildcards: checked_version(wildcards).nvs["mode"],
    log:
        f"{RESULTS}/logs/delta_table/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/delta_table/{{version}}.tsv"
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
        versions_with_deltas,
    output:
        f"{RESULTS}/versions.csv",
    params:
        versions=list(STUDY.versions),
        parents={name: version.extends for name, version in STUDY.versions.items()},
    log:
        f"{RESULTS}/logs/versions_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/versions_table.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/versions_table.py"
