"""Glue: bar charts of PSNR, SSIM and LPIPS per reserved scene, from the version's delta table."""

from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.figures import MetricChartConfig, write_metric_bars

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(MetricChartConfig, snakemake.params.charts, "config report.metric_charts")
    write_metric_bars(snakemake.input[0], snakemake.output[0], cfg)
    log.info("metric charts of %s written to %s", snakemake.input[0], snakemake.output[0])
