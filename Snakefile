# hi4dfix: does fine-tuning DiFix on in-domain Hi4D scenes improve novel-view synthesis?
#
#   materialized scene -> imperfect-pose renders -> triplet JSON -> DiFix checkpoint
#   -> per-scene NVS metrics CSV -> delta table
#
# Main job:  snakemake --cores 2 results/v0/deltas.csv   (cluster: --profile slurm)

from snakemake.utils import min_version

from hi4dfix import plan
from hi4dfix.config_files import check_utf8

min_version("9.0")

DEFAULT_CONFIG = "config/config.yaml"  # relative to the working directory, as Snakemake reads it
try:
    # Snakemake's own read of a file that is not UTF-8 names neither the file nor the byte
    check_utf8(DEFAULT_CONFIG)
except ValueError as error:
    raise WorkflowError(str(error)) from None


configfile: DEFAULT_CONFIG


try:
    # grids expanded into versions, the schema check (one line per problem) and its defaults filled
    # into config, then the study's plan: paths, owners of shared work, resources (hi4dfix.plan); the
    # config files (configfile: and --configfile) are read again strictly: Snakemake drops duplicate keys
    PLAN = plan.load(config, workflow.basedir, config_files=workflow.configfiles)
except ValueError as error:
    raise WorkflowError(str(error)) from None


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
        [PATHS.deltas(version) for version in PLAN.version_names],
        [PATHS.eval_csv(version) for version in PLAN.version_names],
        PATHS.versions_table(),
        [PATHS.compare(grid) for grid in PLAN.grids],
