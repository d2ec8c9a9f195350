"""Glue: the version's provenance record (hi4dfix.provenance) from the rule's inputs and params."""

from hi4dfix.logs import job_log
from hi4dfix.provenance import build_provenance, summary_rows, write_provenance

with job_log(snakemake.log[0]) as log:
    record = build_provenance(
        resolved_config=snakemake.params.config,
        base_spec=snakemake.params.base,
        tuned_model=snakemake.input.tuned,
        scene_fingerprints=snakemake.params.fingerprints,
        arm_csvs=snakemake.params.arm_csvs,
        extra_weights=snakemake.params.extra_weights,
    )
    write_provenance(snakemake.output[0], record)
    summary = "\n".join(f"  {k}: {v}" for k, v in summary_rows(record))
    log.info("provenance of %s:\n%s", snakemake.wildcards.version, summary)
