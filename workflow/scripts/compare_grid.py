"""Glue: an ablation grid's variants against its parent, on the internal evaluation and the reserved scenes
(compare.csv, compare.md, the chart, the decision)."""

from hi4dfix.compare import compare_markdown
from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.provenance import grid_compare_table
from hi4dfix.report.compare_figures import decision_html, write_paired_chart
from hi4dfix.stamps import stamp_job
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import write_csv

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    bootstrap = BootstrapConfig(**params.bootstrap)
    # from the params alone, as `hi4dfix provenance check` recomputes it from the stamp's settings
    settings = {**{key: value for key, value in params.items()}, "variant_order": list(params.settings)}
    table = grid_compare_table(snakemake.wildcards.grid, settings)
    write_csv(snakemake.output.csv, table)
    markdown = compare_markdown(table, bootstrap, references=params.references)
    write_text(snakemake.output.markdown, markdown)
    write_paired_chart(table, snakemake.output.chart, bootstrap)
    write_text(snakemake.output.decision, decision_html(table, bootstrap, references=params.references))
    stamp_job(snakemake, [snakemake.output.csv], settings)  # what made these numbers, now (hi4dfix.stamps)
    log.info("compare table:\n%s", markdown)
