# Triplet stage: the DiFix training/eval JSON of one study version, after its content check.


rule check_reserved_content:
    """Refuse a version whose DiFix scenes hold a reserved scene's frames (pixel-identical or
    near-copies, hi4dfix.fingerprint): build_triplets needs this rule's record."""
    input:
        unpack(content_check_inputs),
    output:
        f"{RESULTS}/{{version}}/content_check.json",
    params:
        # which scene is which: moving a scene between the lists leaves the input files alike
        scenes=lambda wildcards: list(checked_version(wildcards).difix_scenes),
        difix_eval=lambda wildcards: list(checked_version(wildcards).difix_eval),
        reserved=sorted(STUDY.reserved_scenes),
    log:
        f"{RESULTS}/logs/check_reserved_content/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_reserved_content/{{version}}.tsv"
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
        unpack(triplet_inputs),
    output:
        f"{RESULTS}/{{version}}/triplets.json",
    params:
        triplets=lambda wildcards: dict(checked_version(wildcards).triplets),
        train=lambda wildcards: list(checked_version(wildcards).difix_train),
        test=lambda wildcards: list(checked_version(wildcards).difix_eval),
        reserved=sorted(STUDY.reserved_scenes),
        reserved_sequences=reserved_sequence_paths(),
        sequences=lambda wildcards: {s: sequence_path(s) for s in checked_version(wildcards).difix_scenes},
    log:
        f"{RESULTS}/logs/build_triplets/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/build_triplets/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/build_triplets.py"
