"""Glue: charts of each metric (PSNR, SSIM, LPIPS..., whole frame and people) per reserved scene (arm means,
paired differences with intervals and verdicts), from the per-scene NVS CSVs."""

from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.figures import MetricChartConfig, write_metric_bars
from hi4dfix.stats import BootstrapConfig
from hi4dfix.tables import delta_table_from_csvs, endpoint_metrics

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(MetricChartConfig, snakemake.params.charts, "config report.metric_charts")
    arm_csvs = {arm: snakemake.input[arm] for arm in snakemake.params.arms}
    bootstrap = BootstrapConfig(**snakemake.params.bootstrap)
    # The same function and settings as the delta table's job: the same intervals and verdicts.
    # no metrics configured: the delta table's own (the declared endpoint: whole-frame and person metrics)
    metrics = cfg.metrics or endpoint_metrics(bootstrap)
    table = delta_table_from_csvs(
        snakemake.params.scenes, arm_csvs, metrics=metrics, bootstrap=bootstrap,
        seed_csvs=snakemake.params.seed_csvs, first_seed=snakemake.params.seeds[0],
    )  # fmt: skip
    write_metric_bars(table, snakemake.output[0], cfg, source="per-scene NVS CSVs", primary=bootstrap.primary)
    log.info("metric charts of %d scenes written to %s", len(snakemake.params.scenes), snakemake.output[0])
