# Ablation grids (config block `ablations`, expanded into versions by hi4dfix.ablations in the
# Snakefile): each variant's tuned arm against the parent's on the same reserved views, paired per
# view, with Holm-adjusted verdicts across the grid, a chart and a decision for the report.

from hi4dfix.report import CATEGORY_METRICS


rule compare_grid:
    """Every variant of a grid against its parent (tuned arms, paired per view), Holm-adjusted, as CSV,
    markdown, a chart of the paired differences and the decision."""
    input:
        tables=lambda wildcards: [path for paths in grid_tuned_csvs(wildcards).values() for path in paths],
        # the internal evaluation split (difix_eval), on which the decision ranks the variants
        internal=lambda wildcards: list(grid_eval_csvs(wildcards).values()),
        # what made each compared number (results/{version}/provenance.json), named in compare.csv
        provenance=lambda wildcards: [provenance_path(name, RESULTS) for name in grid_tuned_csvs(wildcards)],
    output:
        csv=report(
            f"{RESULTS}/ablations/{{grid}}/compare.csv",
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "variants against the parent (CSV)"},
        ),
        markdown=f"{RESULTS}/ablations/{{grid}}/compare.md",
        chart=report(
            f"{RESULTS}/ablations/{{grid}}/paired.png",
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "paired differences"},
        ),
        decision=report(
            f"{RESULTS}/ablations/{{grid}}/decision.html",
            caption="../report/compare.rst",
            category=CATEGORY_METRICS,
            subcategory="ablations {grid}",
            labels={"item": "decision"},
        ),
    params:
        parent=lambda wildcards: grid_of(wildcards).parent,
        scenes=grid_scenes,
        tables=grid_tuned_csvs,
        internal=grid_eval_csvs,
        settings=lambda wildcards: {v.name: v.describe() for v in grid_of(wildcards).compared},
        references=lambda wildcards: [v.label for v in grid_of(wildcards).variants if v.same_as_parent],
        provenance=lambda wildcards: {name: provenance_path(name, RESULTS) for name in grid_tuned_csvs(wildcards)},
        bootstrap=config["stats"],
    log:
        f"{RESULTS}/logs/compare_grid/{{grid}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare_grid/{{grid}}.tsv"
    conda:
        "../envs/hi4dfix.yaml"
    threads: 1
    resources:
        mem_mb=2000,  # one variant's views at a time
        runtime=10,
    script:
        "../scripts/compare_grid.py"
