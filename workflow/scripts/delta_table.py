"""Glue: tuned vs baseline delta table of one version, from its per-scene NVS CSVs."""

from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.tables import delta_table, read_per_scene_csv, to_markdown, write_csv

with job_log(snakemake.log[0]) as log:
    scenes = snakemake.params.scenes

    def arm_tables(paths):
        return {scene: read_per_scene_csv(path) for scene, path in zip(scenes, paths)}

    table = delta_table(
        baseline=arm_tables(snakemake.input.base),
        tuned=arm_tables(snakemake.input.tuned),
        raw=arm_tables(snakemake.input.raw),
    )
    write_csv(snakemake.output.csv, table)
    write_text(snakemake.output.markdown, to_markdown(table))
    log.info("delta table:\n%s", to_markdown(table))
