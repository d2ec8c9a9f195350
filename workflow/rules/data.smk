# Data stage: synthetic Hi4D-layout sequences (embedded default) and materialized scenes.


if config["data"]["source"] == "synthetic":

    rule synthesize_sequence:
        """Generate one synthetic sequence in Hi4D's exact on-disk layout."""
        output:
            # the sequence's index files (meta, cameras): what materialize_scene reads
            **plan.sequence_index(f"{config['data']['root']}/{{seqdir}}"),
        wildcard_constraints:
            seqdir=one_of(PLAN.sequence_dirs),
        params:
            scene=lambda wildcards: PLAN.scene_for_sequence_dir(wildcards.seqdir),
            synthetic=config["data"]["synthetic"],
        log:
            PATHS.log("synthesize_sequence", "{seqdir}"),
        benchmark:
            PATHS.benchmark("synthesize_sequence", "{seqdir}")
        conda:
            "../envs/hi4dfix.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/synthesize_sequence.py"


rule materialize_scene:
    """Undistort and resize images and masks, and collect cameras, frames and SMPL vertices."""
    input:
        get_sequence_index_files,
    output:
        directory(PATHS.scene("{scene}")),
    params:
        sequence=lambda wildcards: PLAN.sequence_path(wildcards.scene),
        # the folder as the file system resolves it: a moved or re-pointed data.root reruns the scene
        source_dir=get_sequence_identity,
        materialize=config["materialize"],
        # the source images, masks and SMPL files by content (hi4dfix.sources)
        source_state=get_source_state,
    log:
        PATHS.log("materialize_scene", "{scene}"),
    benchmark:
        PATHS.benchmark("materialize_scene", "{scene}")
    # ahead of renders, like check_reserved_content: the content check waits for every scene
    priority: 50
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=4000,  # one image at a time: does not grow with the frames
        runtime=get_materialize_runtime,  # per frame and source pixel (hi4dfix.resources)
    script:
        "../scripts/materialize_scene.py"
