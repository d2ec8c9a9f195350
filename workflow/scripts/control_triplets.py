"""Glue: the control arm's fresh out-of-domain triplets (hi4dfix.difix.control)."""

from hi4dfix.difix.control import ControlDataConfig, write_control_triplets
from hi4dfix.logs import job_log

with job_log(snakemake.log[0]) as log:
    spec = snakemake.params.spec
    cfg = ControlDataConfig(**spec["data"])
    log.info("control data: %s at %s (HxW), render profile %s", cfg, spec["size"], spec["render"])
    count = write_control_triplets(snakemake.output[0], cfg, tuple(spec["size"]), spec["render"], snakemake.threads)
    log.info("wrote %d training triplets to %s", count, snakemake.output[0])
