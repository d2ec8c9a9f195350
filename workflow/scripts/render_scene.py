"""Glue: render one scene under one render profile (per-frame fits, or an external trainer's renders)."""

from hi4dfix.logs import job_log
from hi4dfix.render import render_from_profile
from hi4dfix.scene import load_scene

with job_log(snakemake.log[0]) as log:
    scene = load_scene(snakemake.input.scene)
    manifest = render_from_profile(scene, snakemake.output[0], dict(snakemake.params.profile))
    log.info("%s/%s: %s", snakemake.wildcards.profile, snakemake.wildcards.scene, manifest["summary"])
