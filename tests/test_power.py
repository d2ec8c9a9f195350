"""The power planner: variance components of a small synthetic study and `hi4dfix power` on its CSVs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hi4dfix.cli import main
from hi4dfix.metrics import METRIC_COLUMNS
from hi4dfix.power import Components, inflation, plan, power, variance_components, version_differences
from hi4dfix.tables import per_scene_table, write_csv


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
    assert power(comps, 5, 3, 0.5, 0.05) == 0.0  # 2/32 >= 0.05: the test cannot reach the level
    assert power(comps, 8, 3, 0.5, 0.05, family=11) == 0.0  # 11 x 2/256 >= 0.05
    values = [power(comps, s, 3, 0.5, 0.05) for s in range(6, 30)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:])) and values[-1] > 0.99
    assert inflation(10, 0.0) == 1.0 and inflation(10, 0.9) > 5
    table = plan(comps, 0.5, 0.05)
    assert (table["scenes_needed"] >= 6).all() and (table["power_at_needed"] >= 0.8).all()


def test_hi4dfix_power_on_a_small_study(tmp_path, capsys):
    version = small_study(tmp_path)
    assert main(["power", str(version), "--family", "3"]) == 0
    out = capsys.readouterr().out
    assert "tuned - base, psnr_person, from 5 scenes x 12 frames" in out
    assert "after Holm over 3" in out and "3 frames per scene:" in out and "110 frames per scene:" in out
