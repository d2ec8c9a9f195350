"""Glue: the delta table of one version (raw, base, tuned and, when on, control compared pairwise with
bootstrap intervals and verdicts), from its per-scene NVS CSVs."""

from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import delta_markdown, delta_table_from_csvs, write_csv

with job_log(snakemake.log[0]) as log:
    bootstrap = BootstrapConfig(**snakemake.params.bootstrap)
    arm_csvs = {arm: snakemake.input[arm] for arm in snakemake.params.arms}
    table = delta_table_from_csvs(snakemake.params.scenes, arm_csvs, bootstrap=bootstrap)
    write_csv(snakemake.output.csv, table)
    markdown = delta_markdown(table, bootstrap, title=snakemake.params.title)
    write_text(snakemake.output.markdown, markdown)
    log.info("delta table:\n%s", markdown)
