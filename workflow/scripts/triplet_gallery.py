"""Glue: a few DiFix test triplets with the tuned model's output."""

from hi4dfix.difix.infer import difix_fixer
from hi4dfix.logs import job_log
from hi4dfix.report import settings_from_dict
from hi4dfix.report.gallery import GalleryConfig, write_triplet_gallery
from hi4dfix.triplets import read_triplets

with job_log(snakemake.log[0]) as log:
    cfg = settings_from_dict(GalleryConfig, snakemake.params.gallery, "config report.gallery")
    fixer = difix_fixer(
        snakemake.input.model, hub_cache_dir=snakemake.params.hub_cache_dir, inference=snakemake.params.inference,
        **snakemake.params.size,
    )
    write_triplet_gallery(
        read_triplets(snakemake.input.triplets)["test"],
        fixer,
        snakemake.output[0],
        cfg,
        title=f"{snakemake.wildcards.version}: DiFix test triplets and the tuned model's output",
        source=snakemake.input.triplets,
    )
    log.info("triplet gallery written to %s", snakemake.output[0])
