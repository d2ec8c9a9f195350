"""Training curves through accelerate's trackers (TrainConfig.log_with), beside the CSV logs."""

import csv
import struct
from pathlib import Path

import pytest
import torch

from hi4dfix.difix import trackers
from hi4dfix.difix.train import train
from hi4dfix.difix.train_config import TrainConfig
from triplet_fixtures import SyntheticConfig, write_synthetic_triplets

torch.set_num_threads(1)


def event_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files under ``folder``: tag -> [(step, value)]."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):  # TFRecords: length (8 bytes), its CRC (4), the Event, its CRC (4)
            length = struct.unpack("<Q", data[offset : offset + 8])[0]
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 16 + length
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_tracker_writes_the_loss_curve_beside_the_csv_log(tmp_path):
    pytest.importorskip("tensorboardX")
    triplets = write_synthetic_triplets(
        tmp_path / "data", n_train=2, n_test=1, seed=1, cfg=SyntheticConfig(height=32, width=48, max_view_shift=3)
    )
    cfg = TrainConfig(
        triplets=str(triplets),
        output=str(tmp_path / "tuned.pkl"),
        output_dir=str(tmp_path / "run"),
        steps=3,
        resolution="32x48",
        val_every=0,
        ckpt_every=0,
        log_with="tensorboard",
    )
    train(cfg)
    scalars = event_scalars(tmp_path / "run" / trackers.TRACKERS_DIR / "tensorboard")
    with (tmp_path / "run" / "train_log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the same loss per step as the CSV log (float32 in the event file)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [value for _, value in scalars["train/loss"]] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert [step for step, _ in scalars["val/val_psnr"]] == [3]  # the validation at the end


def test_tracker_settings_are_checked_naming_the_setting(monkeypatch):
    assert trackers.tracker_problem("none", "versions.v0.tuning.log_with") is None
    assert "must be one of" in trackers.tracker_problem("mlflow", "versions.v0.tuning.log_with")
    real_find_spec = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real_find_spec(name)
    )
    problem = trackers.tracker_problem("wandb", "versions.v0.tuning.log_with")
    assert "versions.v0.tuning.log_with is 'wandb'" in problem and "pip install wandb" in problem
    with pytest.raises(ValueError, match="versions.v0.tuning.log_with is 'wandb'"):
        TrainConfig(
            triplets="t", output="o", output_dir="d", log_with="wandb",
            setting_names={"log_with": "versions.v0.tuning.log_with"},
        )  # fmt: skip


def test_a_missing_tracker_package_is_refused_at_plan_load_naming_the_setting(monkeypatch):
    from hi4dfix import plan
    from workflow_helpers import default_config

    config = default_config()
    config["versions"]["v0"]["tuning"]["log_with"] = "wandb"
    loaded = plan.load(config, gpus=0)
    real_find_spec = trackers.importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real_find_spec(name)
    )
    problem = loaded.environment_problem()
    assert problem is not None and "versions.v0.tuning.log_with is 'wandb'" in problem
    # the option reaches the trainer's command line
    assert "--log-with wandb" in loaded.tuning_args("v0")
