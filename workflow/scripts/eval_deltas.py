"""Glue: the internal DiFix evaluation's delta table (raw, base and tuned on the test triplets,
compared pairwise with bootstrap intervals and verdicts), from eval.csv."""

from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.metrics import metric_legend
from hi4dfix.report.markdown_html import write_markdown_html
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import delta_markdown, delta_table, read_seeded_eval_views, write_csv

with job_log(snakemake.log[0]) as log:
    bootstrap = BootstrapConfig(**snakemake.params.bootstrap)
    views = read_seeded_eval_views(dict(zip(snakemake.params.seeds, snakemake.input)))  # one eval.csv per seed
    table = delta_table(views, bootstrap=bootstrap, source=", ".join(snakemake.input))
    write_csv(snakemake.output.csv, table)
    markdown = delta_markdown(table, bootstrap, title=snakemake.params.title)
    markdown += "\n" + metric_legend(table["metric"].unique(), snakemake.config["metrics"]["ssim"], bootstrap.primary)
    write_text(snakemake.output.markdown, markdown)
    if hasattr(snakemake.output, "html"):  # the report's inline view of the tables (report.smk names it)
        write_markdown_html(markdown, snakemake.output.html, title=snakemake.params.title)
    log.info("internal evaluation:\n%s", markdown)
