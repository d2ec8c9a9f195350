"""Glue: the delta table of one version (raw, base, tuned and, when on, control compared pairwise with
bootstrap intervals and verdicts), from its per-scene NVS CSVs, its stamp, and the version's sealed
provenance record (hi4dfix.provenance.seal_provenance), which hashes the tables and gathers the stamps."""

from hi4dfix.evaluate import refit_note
from hi4dfix.io import write_text
from hi4dfix.logs import job_log
from hi4dfix.metrics import metric_legend
from hi4dfix.provenance import nvs_delta_table, read_provenance, seal_provenance, write_provenance
from hi4dfix.render.quality import quality_markdown, read_render_quality
from hi4dfix.report.markdown_html import write_markdown_html
from hi4dfix.stamps import stamp_job
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import delta_markdown, write_csv

with job_log(snakemake.log[0]) as log:
    params, output = snakemake.params, snakemake.output
    bootstrap = BootstrapConfig(**params.bootstrap)
    arm_csvs = {arm: list(snakemake.input[arm]) for arm in params.arms}
    # the first seed's CSVs are the arms'; seed_csvs: the further seeds'. The render quality: how broken
    # the inputs were (the raw renders at the source and held-out cameras)
    table_args = {
        "scenes": list(params.scenes), "arm_csvs": arm_csvs, "nvs_mode": params.nvs_mode,
        "provenance": output.provenance, "seed_csvs": params.seed_csvs, "first_seed": params.seeds[0],
        "render_quality": list(snakemake.input.render_quality),
    }  # fmt: skip
    table = nvs_delta_table(
        table_args["scenes"], arm_csvs, bootstrap, params.nvs_mode, output.provenance,
        seed_csvs=params.seed_csvs or None, first_seed=params.seeds[0], render_quality=table_args["render_quality"],
    )  # fmt: skip
    write_csv(output.csv, table)
    markdown = delta_markdown(table, bootstrap, title=params.title)
    markdown += "\n" + metric_legend(table["metric"].unique(), snakemake.config["metrics"]["ssim"], bootstrap.primary)
    markdown += (
        f"\n{refit_note(params.nvs_mode)}\n\nProvenance: `{output.provenance}` (`hi4dfix provenance check` "
        "verifies its hashes and recomputes this table from the per-view CSVs).\n"
    )
    markdown += (
        "\nRaw-render quality (the imperfect-pose renders against the ground truth, whole frame; train cams: "
        "the cameras the Gaussians were fitted to):\n\n"
        + quality_markdown(read_render_quality(table_args["render_quality"]), params.scenes)
    )
    write_text(output.markdown, markdown)
    if hasattr(output, "html"):  # the report's inline view of the tables (report.smk names it)
        write_markdown_html(markdown, output.html, title=params.title)
    stamps = [*snakemake.input.stamps, *stamp_job(snakemake, [output.csv])]
    eval_csvs = {str(seed): path for seed, path in params.eval_csvs.items()}
    recompute = {
        "deltas": {"path": output.csv, "bootstrap": dict(params.bootstrap), **table_args},
        "eval_deltas": {
            "path": snakemake.input.eval_deltas, "eval_csvs": eval_csvs, "bootstrap": dict(params.bootstrap),
        },
    }  # fmt: skip
    record = seal_provenance(
        read_provenance(snakemake.input.provenance_inputs)[1],
        stamps=stamps,
        ground_truth=snakemake.input.ground_truth,
        tables=[output.csv, snakemake.input.eval_deltas],
        recompute=recompute,
        control_model=snakemake.input.control_model[0] if snakemake.input.control_model else None,
    )
    write_provenance(output.provenance, record)
    log.info("delta table:\n%s", markdown)
    for key, outputs in record["code"]["states"].items():
        log.info("code state %s: %d outputs", key, len(outputs))
