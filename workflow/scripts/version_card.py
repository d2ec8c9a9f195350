"""Glue: the version card (objective, splits, decisions, expected outputs, settings) from the config."""

from hi4dfix.logs import job_log
from hi4dfix.provenance import read_provenance
from hi4dfix.report.card import effective_batch_text, write_version_card
from hi4dfix.study import Version

with job_log(snakemake.log[0]) as log:
    write_version_card(
        snakemake.output[0],
        version=Version(**snakemake.params.version),
        reserved_scenes=snakemake.params.reserved,
        render_profile=snakemake.params.render_profile,
        difix={
            **snakemake.params.difix,
            "effective batch, tuning": effective_batch_text(snakemake.input.tuned, snakemake.params.workdir),
        },
        provenance=read_provenance(snakemake.input.provenance),
    )
    log.info("version card of %s written to %s", snakemake.wildcards.version, snakemake.output[0])
