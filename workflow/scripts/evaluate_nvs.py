"""Glue: NVS metrics of one arm (raw, base or tuned DiFix) on one reserved scene."""

from hi4dfix.evaluate import arm_output_dir, difix_fixer, evaluate_nvs
from hi4dfix.logs import job_log
from hi4dfix.metrics import MetricComputer
from hi4dfix.tables import per_scene_table, write_csv

with job_log(snakemake.log[0]) as log:
    fixer = difix_fixer(snakemake.params.model, hub_cache_dir=snakemake.params.hub_cache_dir, **snakemake.params.size)
    rows = evaluate_nvs(
        mode=snakemake.params.mode,
        scene_dir=snakemake.input.scene,
        render_dir=snakemake.input.renders,
        profile=snakemake.params.profile,
        fixer=fixer,
        metrics=MetricComputer(),
        save_dir=arm_output_dir(snakemake.output[0]),
    )
    table = per_scene_table(rows)
    write_csv(snakemake.output[0], table)
    log.info("%s %s %s mean:\n%s", snakemake.wildcards.version, snakemake.wildcards.arm, snakemake.wildcards.scene, table.tail(1).T)
