"""Glue: an ablation grid's variants against its parent, on the internal evaluation and the reserved scenes
(compare.csv, compare.md, the chart, the decision)."""

from hi4dfix.compare import VariantTables, compare_markdown, compare_table
from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.report.compare_figures import decision_html, write_paired_chart
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import write_csv

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    bootstrap = BootstrapConfig(**params.bootstrap)
    variants = (
        VariantTables(name, settings, params.tables[name], params.provenance[name], params.internal[name])
        for name, settings in params.settings.items()
    )
    table = compare_table(
        snakemake.wildcards.grid,
        params.parent,
        params.tables[params.parent],
        variants,
        params.scenes,
        bootstrap=bootstrap,
        parent_provenance=params.provenance[params.parent],
        parent_eval_csv=params.internal[params.parent],
    )
    write_csv(snakemake.output.csv, table)
    markdown = compare_markdown(table, bootstrap, references=params.references)
    write_text(snakemake.output.markdown, markdown)
    write_paired_chart(table, snakemake.output.chart, bootstrap)
    write_text(snakemake.output.decision, decision_html(table, bootstrap, references=params.references))
    log.info("compare table:\n%s", markdown)
