"""Glue: write a version's triplet JSON."""

from hi4dfix.logs import job_log
from hi4dfix.scene import load_scene
from hi4dfix.triplets import TripletConfig, build_triplets, write_triplets

with job_log(snakemake.log[0]) as log:
    options = dict(snakemake.params.triplets)
    if options.get("cams") is not None:
        options["cams"] = tuple(options["cams"])
    cfg = TripletConfig(**options)
    pairs = {
        scene.name: (scene, render_dir)
        for scene, render_dir in zip(map(load_scene, snakemake.input.scenes), snakemake.input.renders)
    }
    # the folder each scene was materialized from (its scene.json), else the one the config names
    sequences = {
        name: scene.sequence_dir or snakemake.params.sequences[name] for name, (scene, _) in pairs.items()
    }
    triplets = build_triplets(
        train={name: pairs[name] for name in snakemake.params.train},
        test={name: pairs[name] for name in snakemake.params.test},
        cfg=cfg,
    )
    write_triplets(
        snakemake.output[0],
        triplets,
        snakemake.params.reserved,
        scene_sequences=sequences,
        reserved_sequences=snakemake.params.reserved_sequences,
    )
    log.info("%d train and %d test triplets", len(triplets["train"]), len(triplets["test"]))
