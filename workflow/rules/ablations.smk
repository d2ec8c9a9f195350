# Ablation grids (config block `ablations`, expanded into versions by hi4dfix.ablations in the
# Snakefile): each variant's tuned arm against the parent's on the same reserved views, paired per
# view, with Holm-adjusted verdicts across the grid, a chart and a decision for the report.

from hi4dfix.report import CATEGORY_METRICS


rule compare_grid:
    """Every variant of a grid against its parent (tuned arms, paired per view), Holm-adjusted, as CSV,
    markdown, a chart of the paired differences and the decision."""
    input:
        tables=lambda wildcards: [path for paths in get_grid_tuned_csvs(wildcards).values() for path in paths],
        # the internal evaluation split (difix_eval), on which the decision ranks the variants
        internal=lambda wildcards: list(get_grid_eval_csvs(wildcards).values()),
        # what made each compared number (each version's provenance record), named in compare.csv
        provenance=lambda wildcards: list(get_grid_provenance(wildcards).values()),
        # the further training seeds' runs (tuning.seeds): seeds are units of the comparison too
        seed_tables=lambda wildcards: [
            path for runs in PLAN.grid_seed_tables(wildcards.grid).values() for paths in runs for path in paths
        ],
        seed_internal=lambda wildcards: [
            path for paths in PLAN.grid_seed_evals(wildcards.grid).values() for path in paths
        ],
    output:
        csv=report(
            PATHS.compare("{grid}"),
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "variants against the parent (CSV)"},
        ),
        markdown=PATHS.compare("{grid}", "md"),
        chart=report(
            PATHS.paired_chart("{grid}"),
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "paired differences"},
        ),
        decision=report(
            PATHS.decision("{grid}"),
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "decision"},
        ),
        stamp=PATHS.stamp(PATHS.compare("{grid}")),
    params:
        parent=lambda wildcards: get_grid(wildcards).parent,
        scenes=lambda wildcards: PLAN.grid_scenes(wildcards.grid),
        tables=get_grid_tuned_csvs,
        internal=get_grid_eval_csvs,
        seed_tables=lambda wildcards: PLAN.grid_seed_tables(wildcards.grid),
        seed_internal=lambda wildcards: PLAN.grid_seed_evals(wildcards.grid),
        settings=lambda wildcards: {v.name: v.describe() for v in get_grid(wildcards).compared},
        references=lambda wildcards: [v.label for v in get_grid(wildcards).variants if v.same_as_parent],
        provenance=get_grid_provenance,
        bootstrap=config["stats"],
    log:
        PATHS.log("compare_grid", "{grid}"),
    benchmark:
        PATHS.benchmark("compare_grid", "{grid}")
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,  # one variant's views at a time
        runtime=10,
    script:
        "../scripts/compare_grid.py"
