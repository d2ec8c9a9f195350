"""Glue: tuned vs baseline delta table of one version, from its per-scene NVS CSVs."""

from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.tables import delta_table_from_csvs, to_markdown, write_csv

with job_log(snakemake.log[0]) as log:
    arm_csvs = {arm: snakemake.input[arm] for arm in ("raw", "base", "tuned")}
    table = delta_table_from_csvs(snakemake.params.scenes, arm_csvs)
    write_csv(snakemake.output.csv, table)
    write_text(snakemake.output.markdown, to_markdown(table))
    log.info("delta table:\n%s", to_markdown(table))
