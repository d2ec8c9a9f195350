# Render stage: per-frame Gaussians fitted from imperfect poses, rendered at every camera.
# Renders belong to a render profile, so versions with the same settings share them.


rule render_scene:
    """Fit each frame's Gaussians to the source camera(s) and render every camera."""
    input:
        scene=lambda wildcards: PATHS.scene(wildcards.scene),
    output:
        directory(PATHS.render("{profile}", "{scene}")),
    params:
        profile=lambda wildcards: PLAN.render_profiles[wildcards.profile],
    log:
        PATHS.log("render_scene", "{profile}", "{scene}"),
    benchmark:
        PATHS.benchmark("render_scene", "{profile}", "{scene}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        **GPU,
        mem_mb=COSTS.RENDER_MEM_MB,  # one frame at a time: does not grow with the frames (measured)
        runtime=get_render_runtime,  # per frame: the fit's steps and 8 renders (hi4dfix.resources)
    script:
        "../scripts/render_scene.py"


rule render_quality:
    """PSNR/SSIM of a scene's raw renders at the source and the held-out cameras (hi4dfix.render.quality)."""
    input:
        renders=lambda wildcards: PATHS.render(wildcards.profile, wildcards.scene),
    output:
        PATHS.render_quality("{profile}", "{scene}"),
    params:
        ssim=config["metrics"]["ssim"],
    log:
        PATHS.log("render_quality", "{profile}", "{scene}"),
    benchmark:
        PATHS.benchmark("render_quality", "{profile}", "{scene}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,  # one image pair at a time
        runtime=30,
    script:
        "../scripts/render_quality.py"
