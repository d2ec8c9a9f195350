"""Glue: generate one synthetic Hi4D-layout sequence."""

from pathlib import Path

from hi4dfix.logs import job_log
from hi4dfix.synth import SynthConfig, generate_sequence

with job_log(snakemake.log[0]) as log:
    sequence_dir = Path(snakemake.output.meta).parent
    cfg = SynthConfig(**snakemake.params.synthetic)
    log.info("generating %s into %s with %s", snakemake.params.scene, sequence_dir, cfg)
    # replace: Snakemake removed only the declared outputs of an earlier run
    generate_sequence(sequence_dir, snakemake.params.scene, cfg, replace=True)
