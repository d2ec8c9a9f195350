"""Glue: the raw renders' quality of one scene (PSNR/SSIM at the source and the held-out cameras)."""

import pandas as pd

from hi4dfix.logs import job_log
from hi4dfix.render.quality import render_quality
from hi4dfix.tables import write_csv

with job_log(snakemake.log[0]) as log:
    row = render_quality(snakemake.input.renders, snakemake.params.ssim)
    write_csv(snakemake.output[0], pd.DataFrame([row]))
    log.info("%s/%s: %s", snakemake.wildcards.profile, snakemake.wildcards.scene, row)
