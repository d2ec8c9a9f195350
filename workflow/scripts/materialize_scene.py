"""Glue: materialize one scene from its Hi4D sequence (real or synthetic, same reader)."""

from hi4dfix.hi4d import read_sequence
from hi4dfix.logs import job_log
from hi4dfix.materialize import MaterializeConfig, materialize_scene

# Bad input (an unreadable or truncated image, a broken sequence) is reported as its message,
# which names the file; the traceback stays in the job log.
with job_log(snakemake.log[0], brief_errors=(ValueError, OSError)) as log:
    sequence = read_sequence(snakemake.params.sequence)
    cfg = MaterializeConfig(**snakemake.params.materialize)
    log.info("materializing %s from %s with %s", snakemake.wildcards.scene, snakemake.params.sequence, cfg)
    materialize_scene(sequence, snakemake.output[0], snakemake.wildcards.scene, cfg, snakemake.params.source_state)
