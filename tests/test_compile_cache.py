"""The study compile cache (hi4dfix.difix.compile_cache): keys, single-writer atomic entries, unusable
entries ignored with one log line, a real torch.compile round trip between two processes, and the
cache folder reaching the jobs through Snakemake and the Slurm profile."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

from hi4dfix.difix import compile_cache as cc
from hi4dfix.difix.config import DifixConfig
from workflow_helpers import REPO, run_snakemake, small_config


def make_key(**changes) -> cc.CompileKey:
    key = cc.CompileKey(
        kind="infer",
        model=cc.graph_shaping_config(DifixConfig(preset="tiny")),
        size=(384, 512),
        batch=4,
        mode="reduce-overhead",
        settings={"dtype": "bfloat16", "channels_last": "True"},
        versions={"torch": "2.11.0+cu130", "cuda": "13.0", "triton": "3.6.0"},
        device="NVIDIA H200 sm_90",
    )
    return dataclasses.replace(key, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"versions": {"torch": "2.12.0+cu130", "cuda": "13.0", "triton": "3.6.0"}},
        {"versions": {"torch": "2.11.0+cu130", "cuda": "13.0", "triton": "3.7.0"}},
        {"device": "NVIDIA H100 80GB HBM3 sm_90"},
        {"size": (512, 384)},
        {"batch": 1},
        {"mode": "default"},
        {"kind": "train"},
        {"settings": {"dtype": "float32", "channels_last": "True"}},
        {"model": cc.graph_shaping_config(DifixConfig(preset="sd-turbo"))},
        {"model": cc.graph_shaping_config(DifixConfig(preset="tiny", timestep=100))},
    ],
)
def test_every_change_of_what_compiles_gives_another_key(changes):
    base, changed = make_key(), make_key(**changes)
    assert changed.digest() != base.digest() and changed.file_name() != base.file_name()
    assert make_key().digest() == base.digest()  # and the same inputs the same key


def test_weights_source_and_prompt_do_not_change_the_key():
    plain = cc.graph_shaping_config(DifixConfig(preset="tiny"))
    other = cc.graph_shaping_config(DifixConfig(preset="tiny", init_seed=7, prompt="x", hub_cache_dir="/h"))
    assert plain == other


def test_process_key_names_this_torch_and_device():
    key = cc.CompileKey.for_process("train", DifixConfig(preset="tiny"), (64, 96), 1, None, "cpu", precision="bf16")
    import torch

    assert key.versions["torch"] == torch.__version__ and key.device == "cpu" and key.mode == "default"
    assert key.settings == {"precision": "bf16"}


def test_entry_round_trip_and_no_temporary_left(tmp_path):
    key, path = make_key(), tmp_path / "cache" / make_key().file_name()
    assert cc.write_entry(path, key, b"graphs" * 100)
    assert cc.read_entry(path, key) == b"graphs" * 100
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no lock, no temporary


def test_a_held_lock_keeps_a_second_writer_out(tmp_path, caplog):
    key = make_key()
    path = tmp_path / key.file_name()
    lock = path.with_name(path.name + ".lock")
    lock.write_text("other writer\n")
    with caplog.at_level(logging.INFO, logger=cc.LOG.name):
        assert not cc.write_entry(path, key, b"mine")
    assert not path.exists() and "another job is writing" in caplog.text
    old = time.time() - cc.STALE_LOCK_S - 10  # a killed writer's lock is taken over
    os.utime(lock, (old, old))
    assert cc.write_entry(path, key, b"mine") and cc.read_entry(path, key) == b"mine" and not lock.exists()


def test_a_smaller_payload_does_not_replace_a_larger_entry(tmp_path):
    key = make_key()
    path = tmp_path / key.file_name()
    assert cc.write_entry(path, key, b"train graphs and validation graphs")
    assert not cc.write_entry(path, key, b"train graphs")
    assert cc.read_entry(path, key) == b"train graphs and validation graphs"


def test_an_interrupted_write_leaves_the_old_entry(tmp_path, monkeypatch):
    key = make_key()
    path = tmp_path / key.file_name()
    cc.write_entry(path, key, b"old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cc, "encode_entry", fail)
    with pytest.raises(OSError):
        cc.write_entry(path, key, b"a longer new payload")
    assert cc.read_entry(path, key) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the lock is released too


def _race_writer(path, payload, start_at):
    time.sleep(max(0.0, start_at - time.time()))
    return cc.write_entry(path, make_key(), payload)


def test_racing_writers_leave_one_sound_entry(tmp_path):
    path = tmp_path / make_key().file_name()
    payload = os.urandom(4 << 20)  # large enough that the writes overlap
    start_at = time.time() + 1.0
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        wrote = pool.starmap(_race_writer, [(path, payload, start_at)] * 4)
    assert sum(wrote) >= 1
    assert cc.read_entry(path, make_key()) == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize(
    "spoil, reason",
    [
        (lambda data: data[:-100], "partial"),
        (lambda data: data[:-5] + b"XXXXX", "corrupt"),
        (lambda data: b"garbage" + data, "not a compile-cache entry"),
        (lambda data: data[: len(cc.MAGIC) + 30], "truncated header"),
    ],
)
def test_an_unusable_entry_is_ignored_with_one_log_line(tmp_path, caplog, spoil, reason):
    key = make_key()
    path = tmp_path / key.file_name()
    cc.write_entry(path, key, os.urandom(1000))
    path.write_bytes(spoil(path.read_bytes()))
    with caplog.at_level(logging.INFO, logger=cc.LOG.name):
        assert cc.read_entry(path, key) is None
    lines = [r.getMessage() for r in caplog.records if r.name == cc.LOG.name]
    assert len(lines) == 1 and reason in lines[0] and "compiling as before" in lines[0]


def test_an_entry_of_another_key_is_ignored_naming_what_differs(tmp_path, caplog):
    foreign = make_key(device="NVIDIA A100-SXM4-80GB sm_80")
    path = tmp_path / make_key().file_name()  # e.g. copied or renamed by hand
    cc.write_entry(path, foreign, b"kernels for another GPU")
    with caplog.at_level(logging.INFO, logger=cc.LOG.name):
        assert cc.read_entry(path, make_key()) is None
    lines = [r.getMessage() for r in caplog.records if r.name == cc.LOG.name]
    assert len(lines) == 1 and "another key" in lines[0] and "device" in lines[0]


def test_a_missing_entry_is_one_info_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=cc.LOG.name):
        assert cc.open_study_cache(tmp_path, make_key()).loaded is False
    assert [r.levelno for r in caplog.records if r.name == cc.LOG.name] == [logging.INFO]
    assert cc.open_study_cache(None, make_key()) is None


def test_node_local_caches_are_per_job_and_keep_a_users_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    folder = cc.use_node_local_caches()
    assert folder.parent == tmp_path and folder.name.startswith("hi4dfix-inductor-4242-")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)
    assert os.environ["TRITON_CACHE_DIR"] == str(folder / "triton")
    assert cc.use_node_local_caches() is None  # already set (by the user or this job): kept
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)


ROUND_TRIP = textwrap.dedent(
    """
    import sys, torch
    from torch._dynamo.utils import counters
    from hi4dfix.difix import compile_cache as cc
    from hi4dfix.difix.config import DifixConfig

    cc.use_node_local_caches(sys.argv[2])
    key = cc.CompileKey.for_process("infer", DifixConfig(preset="tiny"), (8, 8), 1, None, "cpu")
    cache = cc.open_study_cache(sys.argv[1], key)
    fn = torch.compile(lambda x: torch.nn.functional.gelu(x * 3.0).sin().sum(-1) + x.mean())
    x = torch.arange(64, dtype=torch.float32).reshape(8, 8) / 10
    out = fn(x)
    cache.save()
    torch.save(out, sys.argv[3])
    print("loaded", cache.loaded, "hits", counters["inductor"]["fxgraph_cache_hit"],
          "misses", counters["inductor"]["fxgraph_cache_miss"])
    """
)


def test_a_second_process_with_empty_live_caches_compiles_from_the_study_cache(tmp_path):
    """torch.compile on the CPU, two processes, each with its own fresh node-local caches (as two
    nodes): the second loads the first's entry, hits inductor's graph cache, and computes the same."""
    import torch

    script = tmp_path / "round_trip.py"
    script.write_text(ROUND_TRIP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    runs = []
    for name in ("first", "second"):
        node_tmp = tmp_path / f"node_{name}"
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "study"), str(node_tmp), str(tmp_path / f"{name}.pt")],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(done.stdout.split())
        assert list(node_tmp.iterdir()) == [], "the per-job live cache is removed at exit"
    first, second = runs
    assert first[:2] == ["loaded", "False"] and int(first[5]) >= 1  # compiled: misses
    assert second[:2] == ["loaded", "True"] and int(second[3]) >= 1 and int(second[5]) == 0
    assert torch.equal(torch.load(tmp_path / "first.pt"), torch.load(tmp_path / "second.pt"))


def tune_command(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stdout.splitlines() if "hi4dfix.difix.launch" in line)


@pytest.mark.parametrize("profile", [False, True], ids=["local", "slurm-profile"])
def test_the_cache_folder_reaches_the_tuning_job(tmp_path, profile):
    """difix.compile_cache_dir (default results/compile_cache) on the tuning job's command line, in a
    local run and through the Slurm profile (a dry run: the command sbatch would run)."""
    args = ["--profile", str(REPO / "profiles" / "slurm")] if profile else ["--cores", "1"]
    target = "results/v0/difix/model.pkl"
    result = run_snakemake(tmp_path / "default", small_config(), *args, "-n", "-p", target)
    assert "--compile-cache-dir results/compile_cache" in tune_command(result)
    config = small_config()
    config["difix"]["compile_cache_dir"] = "/scratch/me/hi4dfix-compile"
    result = run_snakemake(tmp_path / "scratch", config, *args, "-n", "-p", target)
    assert "--compile-cache-dir /scratch/me/hi4dfix-compile" in tune_command(result)
    # as docs/slurm.md writes it: on the command line, merged into the difix block
    override = ("--config", "difix={compile_cache_dir: /scratch/you/cc}", "--", target)
    result = run_snakemake(tmp_path / "override", small_config(), *args, "-n", "-p", *override)
    assert "--compile-cache-dir /scratch/you/cc" in tune_command(result) and "--long-side 48" in tune_command(result)



def test_the_tuning_run_keys_its_entry_by_its_step(tmp_path, caplog):
    """train's study cache entry: kind, processing size (the crop when cropping), batch, mode and the
    settings that change the step's graph; opened (and found empty) before the first step."""
    import torch

    from hi4dfix.difix.model import build_random_difix
    from hi4dfix.difix.train import _open_compile_cache
    from hi4dfix.difix.train_config import TrainConfig

    model = build_random_difix(DifixConfig(preset="tiny"))
    process = SimpleProcess(torch.device("cpu"))
    common = {"triplets": "-", "output": "-", "output_dir": "-", "compile_cache_dir": str(tmp_path)}
    assert _open_compile_cache(TrainConfig(**common), process, model, (64, 96)) is None  # not compiled
    assert _open_compile_cache(TrainConfig(**{**common, "compile_cache_dir": None, "compile": True}), process,
                               model, (64, 96)) is None  # fmt: skip
    with caplog.at_level(logging.INFO, logger=cc.LOG.name):
        cache = _open_compile_cache(TrainConfig(**common, compile=True, batch_size=2), process, model, (64, 96))
    assert cache.key.kind == "train" and cache.key.size == (64, 96) and cache.key.batch == 2
    assert cache.key.mode == "default" and cache.key.settings["precision"] == "no"  # no CUDA graphs on the CPU
    assert "no entry" in caplog.text and not cache.loaded
    cropped = _open_compile_cache(TrainConfig(**common, compile=True, crop="32x48"), process, model, (64, 96))
    assert cropped.key.size == (32, 48) and cropped.path != cache.path
    assert cache.save() is False  # nothing compiled in this process: nothing written
    assert list(tmp_path.iterdir()) == []


class SimpleProcess:
    def __init__(self, device):
        self.device = device


def test_the_fixer_opens_an_entry_per_processing_size_and_saves_after_its_first_batch(tmp_path, monkeypatch):
    import numpy as np

    from hi4dfix.difix.infer import DifixFixer
    from hi4dfix.difix.model import build_random_difix

    model = build_random_difix(DifixConfig(preset="tiny"))
    model._compiled_fix = model.fix_flat_views  # stands in for a compiled model (no compilation on the CPU)
    saved = []
    monkeypatch.setattr(cc.StudyCompileCache, "save", lambda self: saved.append(self.key.size))
    fixer = DifixFixer(
        model, batch_size=2, fixed_shapes=True, compile_cache_dir=tmp_path, compile_mode="reduce-overhead"
    )
    rng = np.random.default_rng(0)
    small = [rng.random((32, 48, 3), dtype=np.float32) for _ in range(3)]
    large = [rng.random((48, 64, 3), dtype=np.float32) for _ in range(2)]
    fixer(small, small)
    fixer(large, None)
    assert saved == [(32, 48), (48, 64)]  # once per processing size, after its first batch
    keys = {size: cache.key for size, cache in fixer.compile_caches.items()}
    assert keys[(32, 48)].kind == "infer" and keys[(32, 48)].batch == 2 and keys[(32, 48)].mode == "reduce-overhead"
    assert keys[(32, 48)].settings["views"] == "2" and keys[(48, 64)].settings["views"] == "1"
    assert keys[(32, 48)].settings["dtype"] == "float32" and keys[(32, 48)].settings["channels_last"] == "False"
    eager = DifixFixer(build_random_difix(DifixConfig(preset="tiny")), compile_cache_dir=tmp_path)
    eager(small[:1], small[:1])
    assert eager.compile_caches == {}  # an eager model has nothing to cache
