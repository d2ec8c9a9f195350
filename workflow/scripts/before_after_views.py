"""Glue: held-out views of one reserved scene before and after DiFix (raw, base, control, tuned, the extra arms,
ground truth)."""

from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.gallery import BeforeAfterConfig, write_before_after

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(BeforeAfterConfig, snakemake.params.views, "config report.before_after")
    version, scene = snakemake.wildcards.version, snakemake.wildcards.scene
    write_before_after(
        scene,
        {arm: snakemake.input[arm] for arm in snakemake.params.arms},  # the study's arms, extra arms last
        snakemake.input.renders,
        snakemake.output[0],
        cfg,
        title=f"{version} · {scene}: held-out views before and after DiFix",
    )
    log.info("before/after views of %s written to %s", scene, snakemake.output[0])
