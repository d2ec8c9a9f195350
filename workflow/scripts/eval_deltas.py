"""Glue: the internal DiFix evaluation's delta table (raw, base and tuned on the test triplets,
compared pairwise with bootstrap intervals and verdicts), from eval.csv."""

from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.metrics import metric_legend
from hi4dfix.provenance import eval_delta_table
from hi4dfix.report.markdown_html import write_markdown_html
from hi4dfix.stamps import stamp_job
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import delta_markdown, write_csv

with job_log(snakemake.log[0]) as log:
    bootstrap = BootstrapConfig(**snakemake.params.bootstrap)
    # one eval.csv per training seed; what `hi4dfix provenance check` recomputes
    table = eval_delta_table(dict(zip(snakemake.params.seeds, snakemake.input)), bootstrap)
    write_csv(snakemake.output.csv, table)
    markdown = delta_markdown(table, bootstrap, title=snakemake.params.title)
    markdown += "\n" + metric_legend(table["metric"].unique(), snakemake.config["metrics"]["ssim"], bootstrap.primary)
    write_text(snakemake.output.markdown, markdown)
    if hasattr(snakemake.output, "html"):  # the report's inline view of the tables (report.smk names it)
        write_markdown_html(markdown, snakemake.output.html, title=snakemake.params.title)
    stamp_job(snakemake, [snakemake.output.csv])
    log.info("internal evaluation:\n%s", markdown)
