"""Glue: the DiFix fine-tuning loss curve from the tuning job's train_log.csv."""

from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.figures import LossCurveConfig, write_loss_curve

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(LossCurveConfig, snakemake.params.curve, "config report.loss_curve")
    write_loss_curve(
        snakemake.input[0], snakemake.output[0], cfg, title=f"{snakemake.wildcards.version}: DiFix fine-tuning"
    )
    log.info("loss curve of %s written to %s", snakemake.input[0], snakemake.output[0])
