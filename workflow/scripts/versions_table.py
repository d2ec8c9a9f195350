"""Glue: every version's mean-row comparisons (deltas, intervals, verdicts), one table."""

from hi4dfix.logs import job_log
from hi4dfix.tables import read_delta_csv, versions_table, write_csv

with job_log(snakemake.log[0]):
    deltas = {version: read_delta_csv(path) for version, path in zip(snakemake.params.versions, snakemake.input)}
    write_csv(snakemake.output[0], versions_table(deltas, snakemake.params.parents))
