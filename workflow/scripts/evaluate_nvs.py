"""Glue: NVS metrics of one arm (raw, base, tuned or control DiFix, or an extra arm) on one reserved scene."""

import time

from hi4dfix.difix3d_plus import ProgressiveConfig
from hi4dfix.evaluate import arm_output_dir, evaluate_nvs
from hi4dfix.extra_arms import arm_fixer
from hi4dfix.logs import job_log
from hi4dfix.metrics import MetricComputer, MetricsConfig
from hi4dfix.stamps import stamp_job
from hi4dfix.tables import per_scene_table, write_csv

with job_log(snakemake.log[0]) as log:
    fixer = arm_fixer(  # a DiFix spec (None: raw), or an extra arm's (difix.extra_arms)
        snakemake.params.model, hub_cache_dir=snakemake.params.hub_cache_dir, inference=snakemake.params.inference,
        compile_cache_dir=snakemake.params.compile_cache_dir, **snakemake.params.size,
    )
    started = time.perf_counter()
    rows = evaluate_nvs(
        mode=snakemake.params.mode,
        scene_dir=snakemake.input.scene,
        render_dir=snakemake.input.renders,
        profile=snakemake.params.profile,
        fixer=fixer,
        metrics=MetricComputer(MetricsConfig.from_dict(snakemake.params.metrics)),
        save_dir=arm_output_dir(snakemake.output[0]),
        chunk_views=snakemake.config["metrics"]["chunk_views"],  # not a param: it changes no result
        progressive=ProgressiveConfig.from_nvs(snakemake.params.nvs),
    )
    seconds = time.perf_counter() - started
    log.info("%d views evaluated in %.1f s (%.1f ms/view: reading, fixing, saving, metrics)",
             len(rows), seconds, 1000 * seconds / max(1, len(rows)))
    if fixer is not None:
        log.info("%s", fixer.timing().describe())
    table = per_scene_table(rows)
    if "seed" in snakemake.wildcards.keys():  # a further training seed's run (tuning.seeds): its rows say which
        table.insert(len(table.columns), "seed", int(snakemake.wildcards.seed))
    write_csv(snakemake.output[0], table)
    stamp_job(snakemake, [snakemake.output[0]])  # what made these numbers, now (hi4dfix.stamps)
    log.info(
        "%s %s %s mean:\n%s",
        snakemake.wildcards.version,
        snakemake.wildcards.arm,
        snakemake.wildcards.scene,
        table.tail(1).T,
    )
