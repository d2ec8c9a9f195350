# Triplet stage: the DiFix training/eval JSON of one study version, after its content check.


rule check_reserved_content:
    """Refuse a version whose DiFix scenes hold a reserved scene's frames (pixel-identical or
    near-copies, hi4dfix.fingerprint): build_triplets needs this rule's record."""
    input:
        unpack(get_content_check_inputs),
    output:
        PATHS.content_check("{version}"),
    params:
        # which scene is which: moving a scene between the lists leaves the input files alike
        scenes=lambda wildcards: list(get_version(wildcards).difix_scenes),
        difix_eval=lambda wildcards: list(get_version(wildcards).difix_eval),
        reserved=PLAN.reserved_scenes,
    log:
        PATHS.log("check_reserved_content", "{version}"),
    benchmark:
        PATHS.benchmark("check_reserved_content", "{version}")
    # ahead of the renders that wait with it for the same scenes: a refused version costs no render
    priority: 50
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/check_reserved_content.py"


rule build_triplets:
    """Triplets of the version's difix_train (train) and difix_eval (test) scenes."""
    input:
        unpack(get_triplet_inputs),
    output:
        PATHS.triplets("{version}"),
    params:
        triplets=lambda wildcards: dict(get_version(wildcards).triplets),
        train=lambda wildcards: list(get_version(wildcards).difix_train),
        test=lambda wildcards: list(get_version(wildcards).difix_eval),
        reserved=PLAN.reserved_scenes,
        reserved_sequences=PLAN.reserved_sequence_paths(),
        sequences=lambda wildcards: {s: PLAN.sequence_path(s) for s in get_version(wildcards).difix_scenes},
    log:
        PATHS.log("build_triplets", "{version}"),
    benchmark:
        PATHS.benchmark("build_triplets", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/build_triplets.py"
