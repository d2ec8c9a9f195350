# Data stage: synthetic Hi4D-layout sequences (embedded default) and materialized scenes.


if DATA["source"] == "synthetic":

    rule synthesize_sequence:
        """Generate one synthetic sequence in Hi4D's exact on-disk layout."""
        output:
            meta=f"{DATA['root']}/{{seqdir}}/meta.npz",
            cameras=f"{DATA['root']}/{{seqdir}}/cameras/rgb_cameras.npz",
        wildcard_constraints:
            seqdir=_one_of(STUDY.scene_dirs.values()),
        params:
            scene=lambda wildcards: STUDY.scene_for_sequence_dir(wildcards.seqdir),
            synthetic=DATA["synthetic"],
        log:
            f"{RESULTS}/logs/synthesize_sequence/{{seqdir}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/synthesize_sequence/{{seqdir}}.tsv"
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
        sequence_index_files,
    output:
        directory(f"{RESULTS}/scenes/{{scene}}"),
    params:
        sequence=lambda wildcards: sequence_path(wildcards.scene),
        materialize=config["materialize"],
        # the source images, masks and SMPL files by content (hi4dfix.sources; common.smk)
        source_state=source_state,
    log:
        f"{RESULTS}/logs/materialize_scene/{{scene}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/materialize_scene/{{scene}}.tsv"
    # ahead of renders, like check_reserved_content: the content check waits for every scene
    priority: 50
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=4000,  # one image at a time: does not grow with the frames
        runtime=materialize_runtime,  # per frame and source pixel (common.smk)
    script:
        "../scripts/materialize_scene.py"
