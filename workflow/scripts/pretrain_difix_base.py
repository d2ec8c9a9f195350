"""Glue: pretrain the tiny base DiFix on out-of-domain multi-view renders (it writes the test scores beside it)."""

from hi4dfix.difix.pretrain import PretrainConfig, pretrain
from hi4dfix.logs import job_log
from hi4dfix.stamps import stamp_job

with job_log(snakemake.log[0]) as log:
    cfg = PretrainConfig(
        output=snakemake.output.model,
        work_dir=snakemake.params.workdir,
        workers=snakemake.threads,
        **snakemake.params.pretrain,
    )
    log.info("pretraining the %s base model: %s", snakemake.wildcards.preset, cfg)
    pretrain(cfg)
    stamp_job(snakemake, [snakemake.output.model])  # what made the model, now (hi4dfix.stamps)
