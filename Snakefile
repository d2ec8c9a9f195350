# hi4dfix: does fine-tuning DiFix on in-domain Hi4D scenes improve novel-view synthesis?
#
#   materialized scene -> imperfect-pose renders -> triplet JSON -> DiFix checkpoint
#   -> per-scene NVS metrics CSV -> delta table
#
# Main job:  snakemake --cores 2 results/v0/deltas.csv   (cluster: --profile slurm)

from pathlib import Path

from snakemake.utils import min_version, validate

from hi4dfix.ablations import GridError, expand_config
from hi4dfix.config_schema import ConfigError, check_config, load_schema

min_version("9.0")


configfile: "config/config.yaml"


CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
try:
    # versions that inherit and ablation grids become plain versions first, so that the schema and
    # the reserved-scene policy check every version as it runs
    SCHEMA = load_schema(Path(workflow.basedir) / CONFIG_SCHEMA)
    GRIDS = expand_config(config, SCHEMA)
except GridError as error:
    raise WorkflowError(str(error)) from None
try:
    # one line per problem, starting with the failing key (validate's report dumps the schema)
    check_config(config, Path(workflow.basedir) / CONFIG_SCHEMA, shown_as=CONFIG_SCHEMA, schema=SCHEMA)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
validate(config, schema=CONFIG_SCHEMA)  # fills the schema's defaults into config


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/triplets.smk"
include: "workflow/rules/difix.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/ablations.smk"


rule all:
    default_target: True
    input:
        expand("results/{version}/deltas.csv", version=list(STUDY.versions)),
        expand("results/{version}/difix/eval.csv", version=list(STUDY.versions)),
        "results/versions.csv",
        expand("results/ablations/{grid}/compare.csv", grid=list(GRIDS)),
