# Render stage: per-frame Gaussians fitted from imperfect poses, rendered at every camera.
# Renders belong to a render profile, so versions with the same settings share them.


rule render_scene:
    """Fit each frame's Gaussians to the source camera(s) and render every camera."""
    input:
        scene=lambda wildcards: scene_path(wildcards.scene),
    output:
        directory(f"{RESULTS}/renders/{{profile}}/{{scene}}"),
    params:
        profile=lambda wildcards: STUDY.render_profiles[wildcards.profile],
    log:
        f"{RESULTS}/logs/render_scene/{{profile}}/{{scene}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/render_scene/{{profile}}/{{scene}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=8000,  # one frame at a time: does not grow with the frames
        runtime=render_runtime,  # per frame: the fit's steps and 8 renders (common.smk)
        gpu=1,
    script:
        "../scripts/render_scene.py"
