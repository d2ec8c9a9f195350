"""Glue: refuse a version whose DiFix scenes hold a reserved scene's frames, or whose internal-evaluation
scenes hold a training scene's; record what was compared."""

from hi4dfix.fingerprint import (
    NEAR_COPY_BITS,
    ContentPolicyError,
    check_internal_eval_content,
    check_reserved_content,
    load_fingerprint,
)
from hi4dfix.io import write_json
from hi4dfix.logs import job_log

# a refusal reaches the console as its message (naming version, scenes and an example file)
with job_log(snakemake.log[0], brief_errors=(ContentPolicyError,)) as log:
    # named as the version names them (a scene.json names the scene it was materialized as)
    scenes = {name: load_fingerprint(path) for name, path in zip(snakemake.params.scenes, snakemake.input.scenes)}
    reserved = {name: load_fingerprint(path) for name, path in zip(snakemake.params.reserved, snakemake.input.reserved)}
    check_reserved_content(snakemake.wildcards.version, scenes, reserved)
    evaluation = {name: fingerprint for name, fingerprint in scenes.items() if name in snakemake.params.difix_eval}
    train = {name: fingerprint for name, fingerprint in scenes.items() if name not in evaluation}
    check_internal_eval_content(snakemake.wildcards.version, train, evaluation)
    log.info(
        "no DiFix scene shares frames with the reserved scenes, no internal-evaluation scene with a training "
        "scene (near-copy threshold %d bits, mirrored and rotated copies included)",
        NEAR_COPY_BITS,
    )
    write_json(
        snakemake.output[0],
        {
            "version": snakemake.wildcards.version,
            "near_copy_bits": NEAR_COPY_BITS,
            "difix_scenes": {name: fp["content_sha256"] for name, fp in scenes.items()},
            "reserved_scenes": {name: fp["content_sha256"] for name, fp in reserved.items()},
        },
    )
