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
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    script:
        "../scripts/render_scene.py"
