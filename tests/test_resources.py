"""Cluster resources from measured per-unit costs: a scene's size at DAG build, and what scales with it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hi4dfix import resources as R
from workflow_helpers import default_config, run_snakemake


def config_with(**synthetic) -> dict:
    config = copy.deepcopy(default_config())
    config["data"]["synthetic"].update(synthetic)
    return config


def test_synthetic_scene_size_follows_the_config():
    config = config_with(num_frames=110, width=940, height=1280)
    config["materialize"].update(max_frames=None, frame_stride=3)
    size = R.scene_size(config, "unused")
    assert (size.frames, size.width, size.height, size.cameras) == (37, 940, 1280, 8) and size.pixel_scale == 1.0
    config["materialize"].update(max_frames=20, width=470)
    size = R.scene_size(config, "unused")
    assert (size.frames, size.width, size.height) == (20, 470, 640)  # aspect kept, as materialize does


def test_hi4d_scene_frames_come_from_meta_npz(tmp_path):
    config = default_config()
    config["data"]["source"] = "hi4d"
    config["materialize"].update(max_frames=None, frame_stride=1)
    np.savez(tmp_path / "meta.npz", start=np.array(11), end=np.array(160), genders=np.array(["a"], dtype=object))
    size = R.scene_size(config, tmp_path)
    assert (size.frames, size.width, size.height) == (150, 940, 1280)
    assert R.scene_size(config, tmp_path / "absent").frames == R.UNKNOWN_SEQUENCE_FRAMES


def test_evaluation_memory_does_not_grow_with_frames_but_time_does():
    small, large = R.SceneSize(10, 940, 1280), R.SceneSize(100, 940, 1280)
    # memory depends on the chunk and the image size only
    assert R.evaluation_mem_mb(1.0, 8, ["tiny"]) > R.evaluation_mem_mb(0.25, 8, ["tiny"])
    assert R.evaluation_mem_mb(1.0, 16, []) > R.evaluation_mem_mb(1.0, 8, [])
    assert R.evaluation_mem_mb(1.0, 8, [], attempt=2) >= 2 * R.evaluation_mem_mb(1.0, 8, []) - 100  # a retry asks twice
    # the measured raw-arm peak (chunk 8, 940x1280) is inside the request
    assert R.evaluation_mem_mb(1.0, 8, []) >= 3950
    # sd-turbo: loading dominates a chunk of views; two models load one after the other
    assert R.evaluation_mem_mb(1.0, 8, ["sd-turbo", "sd-turbo"]) < 2 * R.evaluation_mem_mb(1.0, 8, ["sd-turbo"])
    raw = [R.nvs_runtime_min(size, size.frames * 7, None, "postfix", 300) - R.JOB_START_MIN for size in (small, large)]
    assert 9 <= raw[1] / raw[0] <= 10  # linear in the views (rounded up to minutes)
    turbo = [R.nvs_runtime_min(size, size.frames * 7, "sd-turbo", "postfix", 300) for size in (small, large)]
    assert turbo[0] > raw[0] and turbo[1] > raw[1]  # plus DiFix per view and its loading
    plus = R.nvs_runtime_min(large, 700, "sd-turbo", "difix3d+", 300)
    assert plus > R.nvs_runtime_min(large, 700, "sd-turbo", "postfix", 300)
    assert R.render_runtime_min(large, 300) > R.render_runtime_min(small, 300)


def test_gpu_evaluation_requests_sit_within_1_5x_of_the_measured_pss():
    """The full-size study at long side 1024 on one H100 (BENCHMARKS.md, 2026-12-07): each
    evaluation job's summed PSS peak (MiB), chunk 8 at 940x1280; requests (MB) in [peak, 1.5 peak]."""
    measured_mib = {
        ("raw", ()): 2167,
        ("base", ("sd-turbo",)): 4678,
        ("tuned", ("sd-turbo",)): 7651,
        ("evaluate_difix", ("sd-turbo",) * 3): 7524,
    }
    for (arm, presets), peak_mib in measured_mib.items():
        request = R.evaluation_mem_mb(1.0, 8, list(presets), gpu=True, tuned=arm in ("tuned", "evaluate_difix"))
        peak_mb = peak_mib * 1.048576
        assert peak_mb <= request <= 1.5 * peak_mb, (arm, request, peak_mb)
    # the CPU path keeps its own measured per-view cost (LPIPS on the CPU: 3950 MiB raw arm)
    assert R.evaluation_mem_mb(1.0, 8, []) > R.evaluation_mem_mb(1.0, 8, [], gpu=True)


def test_progressive_rounds_match_difix3d_plus():
    from hi4dfix.difix3d_plus import ProgressiveConfig

    assert R.PROGRESSIVE_ROUNDS == ProgressiveConfig().rounds


def test_rules_ask_for_resources_from_the_scene_size(tmp_path):
    """At DAG build: evaluate_nvs memory stays put from 10 to 100 frames; its time and the render's grow."""

    def planned(frames: int) -> dict[str, tuple[int, int]]:
        config = config_with(num_frames=frames, width=940, height=1280)
        config["materialize"]["max_frames"] = None
        result = run_snakemake(tmp_path / str(frames), config, "-n", "results/v0/deltas.csv")
        found, rule = {}, None
        for line in result.stdout.splitlines():
            if line.startswith("rule "):
                rule = line[5:].rstrip(":")
            elif rule and line.strip().startswith("resources:") and rule not in found:
                values = dict(item.split("=", 1) for item in line.split("resources:", 1)[1].strip().split(", "))
                found[rule] = (int(values["mem_mb"]), int(values["runtime"]))
        return found

    ten, hundred = planned(10), planned(100)
    assert ten["evaluate_nvs"][0] == hundred["evaluate_nvs"][0]
    for rule in ("evaluate_nvs", "render_scene", "materialize_scene"):
        assert hundred[rule][1] > ten[rule][1], rule


@pytest.mark.parametrize("attempt", [1, 2])
def test_requests_round_up(attempt):
    assert R.evaluation_mem_mb(0.01, 1, [], attempt) % 100 == 0
    assert isinstance(R.render_runtime_min(R.SceneSize(3, 120, 160), 60, attempt), int)
