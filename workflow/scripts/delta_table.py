"""Glue: the delta table of one version (raw, base, tuned and, when on, control compared pairwise with
bootstrap intervals and verdicts), from its per-scene NVS CSVs; it names the provenance record of its
inputs and which arms Difix3D+ refit."""

from hi4dfix.evaluate import refit_note, with_refit_column
from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.metrics import metric_legend
from hi4dfix.provenance import tag_table
from hi4dfix.render.quality import quality_markdown, read_render_quality, with_render_quality
from hi4dfix.report.markdown_html import write_markdown_html
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import MEAN, delta_markdown, delta_table_from_csvs, write_csv

with job_log(snakemake.log[0]) as log:
    bootstrap = BootstrapConfig(**snakemake.params.bootstrap)
    arm_csvs = {arm: snakemake.input[arm] for arm in snakemake.params.arms}
    seeds = snakemake.params.seeds  # the first seed's CSVs are the arms'; seed_csvs: the further seeds'
    table = delta_table_from_csvs(
        snakemake.params.scenes,
        arm_csvs,
        bootstrap=bootstrap,
        seed_csvs=snakemake.params.seed_csvs,
        first_seed=seeds[0],
    )
    table = tag_table(with_refit_column(table, snakemake.params.nvs_mode), snakemake.input.provenance)
    # how broken the inputs were: the raw renders' quality at the source and held-out cameras
    quality = read_render_quality(snakemake.input.render_quality)
    table = with_render_quality(table, quality, MEAN)
    write_csv(snakemake.output.csv, table)
    markdown = delta_markdown(table, bootstrap, title=snakemake.params.title)
    markdown += "\n" + metric_legend(table["metric"].unique(), snakemake.config["metrics"]["ssim"], bootstrap.primary)
    markdown += (
        f"\n{refit_note(snakemake.params.nvs_mode)}\n\nProvenance: `{snakemake.input.provenance}` "
        f"(sha256 {table['provenance_sha256'].iloc[0][:12]}; `hi4dfix provenance check` re-hashes its files).\n"
    )
    markdown += (
        "\nRaw-render quality (the imperfect-pose renders against the ground truth, whole frame; train cams: "
        "the cameras the Gaussians were fitted to):\n\n" + quality_markdown(quality, snakemake.params.scenes)
    )
    write_text(snakemake.output.markdown, markdown)
    if hasattr(snakemake.output, "html"):  # the report's inline view of the tables (report.smk names it)
        write_markdown_html(markdown, snakemake.output.html, title=snakemake.params.title)
    log.info("delta table:\n%s", markdown)
