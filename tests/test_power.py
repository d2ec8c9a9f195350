"""The power planner: variance components of a small synthetic study and `hi4dfix power` on its CSVs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hi4dfix.cli import main
from hi4dfix.metrics import METRIC_COLUMNS
from hi4dfix.power import (
    Components,
    inflation,
    plan,
    power,
    seed_variance,
    variance_components,
    version_differences,
)
from hi4dfix.tables import per_scene_table, read_per_scene_csv, write_csv


def small_study(tmp_path, n_scenes=5, n_frames=12, scene_sd=0.3, frame_sd=0.2, gain=0.4, seed=0):
    rng = np.random.default_rng(seed)
    for s in range(n_scenes):
        scene = f"hi4d_pair{15 + s}_x"
        offset = gain + rng.normal(0, scene_sd)
        frames = offset + rng.normal(0, frame_sd, n_frames)
        for arm, shift in (("base", np.zeros(n_frames)), ("tuned", frames)):
            rows = [
                {"frame": f, "cam": c, "psnr": 20.0 + shift[f], "ssim": 0.5, "lpips": 0.3,
                 "psnr_person": 18.0 + shift[f] + 0.01 * c, "ssim_person": 0.5, "lpips_person": 0.3,
                 **dict.fromkeys(METRIC_COLUMNS[6:], np.nan)}
                for f in range(n_frames) for c in (4, 16)
            ]  # fmt: skip
            write_csv(tmp_path / "v0" / "nvs" / arm / f"{scene}.csv", per_scene_table(rows))
    return tmp_path / "v0"


def test_variance_components_of_a_known_study(tmp_path):
    version = small_study(tmp_path, n_scenes=40, scene_sd=0.3, frame_sd=0.2)
    comps = variance_components(version_differences(version, "psnr_person"), "psnr_person")
    assert comps.n_scenes == 40 and comps.n_frames == 12
    assert math.sqrt(comps.frame_var) == pytest.approx(0.2, rel=0.15)
    assert math.sqrt(comps.scene_var) == pytest.approx(0.3, rel=0.3)
    assert comps.mean == pytest.approx(0.4, abs=0.15)


def test_power_respects_the_sign_flip_floor_and_grows_with_scenes():
    comps = Components(0.0, 0.09, 0.04, 0.0, 4, 3)
    assert power(comps, 5, 3, 0.5, 0.05, n_seeds=3) == 0.0  # 2/32 >= 0.05: the test cannot reach the level
    assert power(comps, 8, 3, 0.5, 0.05, family=11, n_seeds=3) == 0.0  # 11 x 2/256 >= 0.05
    assert power(comps, 30, 3, 0.5, 0.05) == 0.0  # one training seed: too few seeds, whatever the scenes
    values = [power(comps, s, 3, 0.5, 0.05, n_seeds=3) for s in range(6, 30)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:])) and values[-1] > 0.99
    assert inflation(10, 0.0) == 1.0 and inflation(10, 0.9) > 5
    table = plan(comps, 0.5, 0.05, seed_options=(3,))
    assert (table["scenes_needed"] >= 6).all() and (table["power_at_needed"] >= 0.8).all()


def test_hi4dfix_power_on_a_small_study(tmp_path, capsys):
    version = small_study(tmp_path)
    assert main(["power", str(version), "--family", "3"]) == 0
    out = capsys.readouterr().out
    assert "tuned - base, psnr_person, from 5 scenes x 12 frames" in out
    assert (
        "after Holm over 3" in out and "3 frames per scene, 3 seeds:" in out and "110 frames per scene, 5 seeds:" in out
    )
    assert "3 frames per scene, 1 seed: no verdict (too few seeds)" in out


def seeded_study(tmp_path, seed_sd, n_seeds=3, n_scenes=6, n_frames=12, rng_seed=1):
    """small_study's layout with further training seeds in nvs/tuned/seed{N}/, each seed's tuned arm shifted
    everywhere by its own draw of SD ``seed_sd`` (a trained model's luck)."""
    rng = np.random.default_rng(rng_seed)
    version = small_study(tmp_path, n_scenes=n_scenes, n_frames=n_frames, seed=rng_seed)
    shifts = rng.normal(0, seed_sd, n_seeds)
    tuned = version / "nvs" / "tuned"
    for k, shift in enumerate(shifts):
        folder = tuned if k == 0 else tuned / f"seed{k}"
        for path in sorted(tuned.glob("*.csv")):
            table = read_per_scene_csv(path)
            table = table[table["frame"].astype(str) != "mean"].copy()
            table[["frame", "cam"]] = table[["frame", "cam"]].astype(int)
            table["psnr_person"] = table["psnr_person"].astype(float) + shift - (shifts[0] if k == 0 else 0.0)
            write_csv(folder / path.name, per_scene_table(table.to_dict("records")))
    return version, shifts


def test_seed_variance_of_a_seeds_by_scenes_table():
    rng = np.random.default_rng(2)
    cells = rng.normal(0, 0.1, (400, 30)) + rng.normal(0, 0.5, (400, 1))  # seeds x scenes
    assert math.sqrt(seed_variance(pd.DataFrame(cells))) == pytest.approx(0.5, rel=0.1)
    assert seed_variance(pd.DataFrame(cells[:1])) == 0.0  # one seed: nothing measured


def test_more_seeds_lower_the_scenes_needed_when_seeds_vary():
    comps = Components(0.0, 0.09, 0.04, 0.0, 6, 3, seed_var=0.02, n_seeds=3)
    table = plan(comps, 0.5, 0.05, seed_options=(1, 3, 5)).set_index(["seeds", "frames_per_scene"])
    assert table.loc[(3, 3), "scenes_needed"] > table.loc[(5, 3), "scenes_needed"]
    # a seed term as large as the effect: one seed never gets there, whatever the scenes
    big = Components(0.0, 0.09, 0.04, 0.0, 6, 3, seed_var=0.25, n_seeds=3)
    assert plan(big, 0.5, 0.05, seed_options=(1,))["scenes_needed"].isna().all()


def test_hi4dfix_power_reads_the_seeds_and_draws_the_chart(tmp_path, capsys):
    version, _ = seeded_study(tmp_path, seed_sd=0.5)
    diffs = version_differences(version, "psnr_person")
    assert sorted(diffs["seed"].unique()) == ["1", "2", "first"]
    comps = variance_components(diffs, "psnr_person")
    assert comps.n_seeds == 3 and comps.seed_var > 0
    chart = tmp_path / "power.png"
    assert main(["power", str(version), "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "3 training seeds: seed SD" in out and "3 frames per scene, 5 seeds:" in out and f"chart: {chart}" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
