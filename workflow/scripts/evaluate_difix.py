"""Glue: DiFix internal evaluation (raw, base, tuned, control when on, extra arms) on the version's test triplets."""

import pandas as pd

from hi4dfix.difix.infer import difix_fixer
from hi4dfix.evaluate import evaluate_difix_arms
from hi4dfix.extra_arms import arm_fixer
from hi4dfix.logs import job_log
from hi4dfix.metrics import MetricComputer, MetricsConfig
from hi4dfix.stamps import stamp_job
from hi4dfix.tables import write_csv
from hi4dfix.triplets import read_triplets

with job_log(snakemake.log[0]) as log:
    options = {
        "hub_cache_dir": snakemake.params.hub_cache_dir,
        "inference": snakemake.params.inference,
        "compile_cache_dir": snakemake.params.compile_cache_dir,
        **snakemake.params.size,
    }
    fixers = {
        "raw": None,
        "base": difix_fixer(snakemake.params.base, **options),
        "tuned": difix_fixer(snakemake.input.tuned, **options),
    }
    if snakemake.params.control:
        fixers["control"] = difix_fixer(snakemake.params.control, **options)
    for name, spec in snakemake.params.extra_arms.items():  # difix.extra_arms: released fixers, inference only
        fixers[name] = arm_fixer(spec, **options)
    rows = evaluate_difix_arms(
        read_triplets(snakemake.input.triplets)["test"],
        fixers,
        MetricComputer(MetricsConfig.from_dict(snakemake.params.metrics)),
        snakemake.input.scenes,
        chunk_views=snakemake.config["metrics"]["chunk_views"],  # not a param: it changes no result
    )
    for arm in (arm for arm, fixer in fixers.items() if fixer is not None):
        log.info("%s %s", arm, fixers[arm].timing().describe())
    table = pd.DataFrame(rows)
    write_csv(snakemake.output[0], table)
    stamp_job(snakemake, [snakemake.output[0]])  # what made these numbers, now (hi4dfix.stamps)
    log.info("mean per arm:\n%s", table.groupby("arm").mean(numeric_only=True))
