"""Glue: refuse control triplets whose images are (near-)copies of a reserved scene's frames; record them."""

from hi4dfix.difix.control import control_images
from hi4dfix.fingerprint import NEAR_COPY_BITS, ContentPolicyError, check_control_content, load_fingerprint
from hi4dfix.io import write_json
from hi4dfix.logs import job_log

# a refusal reaches the console as its message (naming the triplets file, an image and the reserved scene)
with job_log(snakemake.log[0], brief_errors=(ContentPolicyError,)) as log:
    reserved = {name: load_fingerprint(path) for name, path in zip(snakemake.params.reserved, snakemake.input.reserved)}
    images = control_images(snakemake.input.triplets)
    fingerprint = check_control_content(snakemake.input.triplets, images, reserved)
    log.info("%d control images, none a copy of a reserved scene's frames (%d bits)", len(images), NEAR_COPY_BITS)
    write_json(
        snakemake.output[0],
        {
            "triplets": snakemake.input.triplets,
            "near_copy_bits": NEAR_COPY_BITS,
            "images": len(images),
            "content_sha256": fingerprint["content_sha256"],
            "reserved_scenes": {name: fp["content_sha256"] for name, fp in reserved.items()},
        },
    )
