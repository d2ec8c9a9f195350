"""Glue: the DiFix fine-tuning loss curve from the tuning job's train_log.csv (and the control arm's)."""

from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.figures import LossCurveConfig, write_loss_curve

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(LossCurveConfig, snakemake.params.curve, "config report.loss_curve")
    write_loss_curve(
        snakemake.input.tuned,
        snakemake.output[0],
        cfg,
        title=f"{snakemake.wildcards.version}: DiFix fine-tuning",
        control_log_csv=snakemake.params.control,
    )
    log.info("loss curve of %s written to %s", snakemake.input.tuned, snakemake.output[0])
