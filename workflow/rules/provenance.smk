# What went into a version's numbers (hi4dfix.provenance): resolved config hash, package versions,
# weights, scene content fingerprints and the hashes of every NVS prediction, in
# provenance_inputs.json (the version card shows it). The delta_table job seals it into
# provenance.json with the jobs' stamps and the tables' hashes; `hi4dfix provenance check
# results/{version}` verifies that record and recomputes the tables.


rule provenance:
    """What made the version's numbers, written atomically to results/{version}/provenance.json."""
    input:
        unpack(get_provenance_inputs),
        base=get_base_input,
        tuned=PATHS.model("{version}"),
        extra_arms=PLAN.extra_arm_inputs(),
    output:
        PATHS.provenance_inputs("{version}"),
    params:
        base=PLAN.base_spec,
        config=get_resolved_version_config,
        fingerprints=get_scene_fingerprints,
        arm_csvs=get_nvs_arm_csvs,
        extra_weights=PLAN.extra_arm_weights(),
    log:
        PATHS.log("provenance", "{version}"),
    benchmark:
        PATHS.benchmark("provenance", "{version}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/provenance.py"
