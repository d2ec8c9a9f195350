# hi4dfix: does fine-tuning DiFix on in-domain Hi4D scenes improve novel-view synthesis?
#
#   materialized scene -> imperfect-pose renders -> triplet JSON -> DiFix checkpoint
#   -> per-scene NVS metrics CSV -> delta table
#
# Main job:  snakemake --cores 2 results/v0/deltas.csv   (cluster: --profile slurm)

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/triplets.smk"
include: "workflow/rules/difix.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        expand("results/{version}/deltas.csv", version=list(STUDY.versions)),
        expand("results/{version}/difix/eval.csv", version=list(STUDY.versions)),
        "results/versions.csv",
    default_target: True
