# Provenance of a version's numbers (hi4dfix.provenance): code commit, resolved config hash,
# package versions, weights, scene content fingerprints and the hashes of every NVS prediction.
# The delta table and the version card take it as input, so every deltas.csv names the record of
# what made it; `hi4dfix provenance check results/{version}` re-hashes the files it lists.


rule provenance:
    """What made the version's numbers, written atomically to results/{version}/provenance.json."""
    input:
        base=difix_base_input,
        tuned=f"{RESULTS}/{{version}}/difix/model.pkl",
        scenes=lambda wildcards: [str(Path(p).parent) for p in scene_fingerprints(wildcards).values()],
        arms=lambda wildcards: [csv for csvs in nvs_arm_csvs(wildcards).values() for csv in csvs],
    output:
        f"{RESULTS}/{{version}}/provenance.json",
    params:
        base=difix_base_spec(),
        config=resolved_version_config,
        fingerprints=scene_fingerprints,
        arm_csvs=nvs_arm_csvs,
    log:
        f"{RESULTS}/logs/provenance/{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/provenance/{{version}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/provenance.py"
