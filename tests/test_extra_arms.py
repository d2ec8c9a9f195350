"""Extra arms (difix.extra_arms, hi4dfix.extra_arms): released fixers evaluated like the base arm and compared as
tuned − ARM and ARM − raw; a TorchScript fixer with nv-tlabs/Fixer's contract and a single-image DiFix."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hi4dfix import extra_arms as E
from hi4dfix import plan as P
from hi4dfix import weights as W
from hi4dfix.difix.config import DifixConfig
from hi4dfix.difix.model import build_random_difix
from hi4dfix.difix.pretrained_dir import save_pretrained_dir
from hi4dfix.provenance import check_provenance, read_provenance
from hi4dfix.tables import read_delta_csv
from workflow_helpers import default_config, planned_jobs, run_snakemake

FIXER_SIZE = "512x288"  # W x H: the smallest of Fixer's exported sizes


class TinyFixer(torch.nn.Module):
    """Fixer's contract on a tiny model: [1, 3, H, W] in [-1, 1] in whatever dtype it is given (bf16), the same
    shape and range out; it darkens every pixel a little (computed in fp32, as its conv weights are)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.constant_(self.conv.bias, -0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() + self.conv(x.float())).clamp(-1, 1).to(x.dtype)


def scripted_fixer(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyFixer()).save(str(path))
    return path


def tiny_difix_folder(path: Path) -> Path:
    """A tiny random-weight DiFix pipeline folder (a local stand-in for nvidia/difix)."""
    return save_pretrained_dir(build_random_difix(DifixConfig(preset="tiny", init_seed=5)), path)


def with_arms(config: dict, arms: dict) -> dict:
    config = copy.deepcopy(config)
    config["difix"]["extra_arms"] = arms
    return config


def fixer_arm(file: str, **changes) -> dict:
    return {"kind": "torchscript", "file": file, "resolution": FIXER_SIZE, "dtype": "bfloat16", **changes}


def plan_of(config: dict) -> P.Plan:
    return P.load(copy.deepcopy(config), gpus=0)


# ---- the spec, refused before any job runs ---------------------------------------------------------


def test_without_extra_arms_the_plan_is_the_studys(tmp_path):
    plan = plan_of(default_config())
    assert plan.arms == ("raw", "base", "tuned", "control") and plan.extra_arms == {}
    assert plan.extra_arm_params() == {} and plan.extra_arm_inputs() == [] and plan.extra_arm_weights() == {}
    assert "extra arms" not in plan.card_difix("v0")
    assert "extra_arms" not in plan.resolved_version_config("v0")["difix"]  # the provenance record is as it was


def test_extra_arms_are_planned_like_the_base_arm_and_shared_across_versions(tmp_path):
    fixer = scripted_fixer(tmp_path / "models" / "pretrained" / "pretrained_fixer_jit.pt")
    single = tiny_difix_folder(tmp_path / "difix")
    config = with_arms(default_config(), {
        "fixer": fixer_arm(str(fixer)), "difix1": {"kind": "difix", "model": str(single), "reference": False},
    })  # fmt: skip
    config["ablations"] = {"ref": {"parent": "v0", "axes": {"triplets.reference": ["same_time", "temporal"]}}}
    plan = plan_of(config)
    assert plan.arms == ("raw", "base", "tuned", "control", "fixer", "difix1")
    scene = plan.reserved_scenes[0]
    # the variant's extra arms are v0's, as its raw and base arms are; its tuned arm is its own
    assert plan.nvs_csv("ref.temporal", "fixer", scene) == plan.nvs_csv("v0", "fixer", scene)
    assert plan.nvs_csv("ref.temporal", "difix1", scene) == f"results/v0/nvs/difix1/{scene}.csv"
    assert plan.nvs_csv("ref.temporal", "tuned", scene) == f"results/ref.temporal/nvs/tuned/{scene}.csv"
    assert plan.arm_model_param("v0", "fixer")["kind"] == "torchscript"
    assert E.from_params(plan.arm_model_param("v0", "difix1")) == plan.extra_arms["difix1"]
    assert plan.arm_model_param("v0", "base") == plan.base_spec
    assert plan.nvs_model_input("v0", "fixer") == [str(fixer)] and plan.extra_arm_inputs() == [str(fixer), str(single)]
    assert plan.arm_preset("difix1") == "tiny" and plan.arm_preset("fixer") == "sd-turbo"
    assert set(plan.nvs_arm_csvs("v0")) == set(plan.arms)
    card = plan.card_difix("v0")["extra arms"]
    assert "fixer: TorchScript" in card and "512x288" in card and "without the reference view" in card


@pytest.mark.parametrize(
    "name, block, message",
    [
        ("tuned", {"kind": "difix", "model": "nvidia/difix", "reference": False}, r"config key difix.extra_arms"),
        ("my_vs_it", {"kind": "difix", "model": "nvidia/difix", "reference": False}, r"without '_vs_'"),
        ("fixer", {"kind": "difix", "model": "nvidia/difix"}, r"difix.extra_arms.fixer: kind difix needs "
         r"difix.extra_arms.fixer.reference"),
        ("fixer", {"kind": "difix", "model": "x", "reference": True, "resolution": "512x288"},
         r"difix.extra_arms.fixer: key\(s\) resolution do not belong to kind difix"),
        ("fixer", {"kind": "difix", "model": "missing/folder/model_1.pkl", "reference": True},
         r"arm fixer: difix.extra_arms.fixer.model missing/folder/model_1.pkl does not exist"),
    ],
)  # fmt: skip
def test_bad_specs_are_refused_at_plan_load_naming_the_arm_and_setting(name, block, message):
    with pytest.raises(ValueError, match=message):
        plan_of(with_arms(default_config(), {name: block}))


def test_torchscript_arms_that_would_fail_in_a_job_are_refused_at_plan_load(tmp_path):
    """A missing file, a missing import module (transformer_engine where it is not installed), a size the model
    was not exported for, a file that is not a TorchScript model: each refused naming the arm, setting and fix."""
    fixer = scripted_fixer(tmp_path / "fixer.pt")
    config = default_config()
    missing = str(tmp_path / "models" / "pretrained" / "pretrained_fixer_jit.pt")
    with pytest.raises(
        P.PlanError,
        match=r"arm fixer: difix.extra_arms.fixer.file .*pretrained_fixer_jit.pt does "
        r"not exist; download it \(for nv-tlabs/Fixer: huggingface-cli download nvidia/Fixer",
    ):
        plan_of(with_arms(config, {"fixer": fixer_arm(missing)}))
    with pytest.raises(
        P.PlanError,
        match=r"arm fixer: difix.extra_arms.fixer.imports: module\(s\) "
        r"no_such_engine_xyz are not installed .*pip install transformer-engine",
    ):
        plan_of(with_arms(config, {"fixer": fixer_arm(str(fixer), imports=["no_such_engine_xyz"])}))
    with pytest.raises(
        P.PlanError,
        match=r"arm fixer: difix.extra_arms.fixer.resolution 500x288 \(W x H\) is not "
        r"one the model was exported for \(1024x576, 832x448, 704x384, 512x288\); set "
        r"difix.extra_arms.fixer.resolution to one of them",
    ):
        plan_of(with_arms(config, {"fixer": fixer_arm(str(fixer), resolution="500x288")}))
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, weights)
    with pytest.raises(
        P.PlanError,
        match=rf"arm fixer: {weights} \(difix.extra_arms.fixer.file\) is not a "
        r"TorchScript model .*torch.jit.script or torch.jit.trace",
    ):
        plan_of(with_arms(config, {"fixer": fixer_arm(str(weights))}))
    assert plan_of(with_arms(config, {"fixer": fixer_arm(str(fixer), resolutions=["64x48"], resolution="64x48")}))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty private Hub cache, the Hub offline: nothing here can reach the internet."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(W, "url_size", lambda url: None)
    return tmp_path / "hub"


def hub_arms_config(hub: Path) -> dict:
    config = with_arms(default_config(), {
        "fixer": fixer_arm("pretrained/pretrained_fixer_jit.pt", repo="nvidia/Fixer"),
        "difix1": {"kind": "difix", "model": "nvidia/difix", "reference": False},
    })  # fmt: skip
    config["difix"]["hub_cache_dir"] = str(hub)
    return config


def test_fetch_weights_knows_each_extra_arms_hub_weights(offline_hub):
    """A Hub TorchScript file (Fixer) and a Hub DiFix (nvidia/difix): listed by fetch-weights, missing ones named
    at DAG build with the command that fetches them; local arms need nothing fetched."""
    plan = plan_of(hub_arms_config(offline_hub))  # not downloaded yet: listed below, not refused by the arm's check
    items = {item.name: item for item in W.wanted_weights(plan.config)}
    fixer, difix = items["TorchScript fixer of arm fixer"], items["DiFix of arm difix1"]
    assert (fixer.source, fixer.files, fixer.needed_by) == (
        "nvidia/Fixer", ("pretrained/pretrained_fixer_jit.pt",), ("difix.extra_arms.fixer.file",),
    )  # fmt: skip
    assert difix.source == "nvidia/difix" and difix.files == () and difix.destination == offline_hub
    message = plan.missing_weights()
    assert "TorchScript fixer of arm fixer (nvidia/Fixer), needed by difix.extra_arms.fixer.file" in message
    assert "DiFix of arm difix1 (nvidia/difix), needed by difix.extra_arms.difix1.model" in message
    assert "hi4dfix fetch-weights" in message
    assert plan.extra_arm_weights()["fixer"] == "nvidia/Fixer:pretrained/pretrained_fixer_jit.pt"


def test_fetch_weights_lists_and_downloads_a_hub_torchscript_file(offline_hub, tmp_path, capsys, monkeypatch):
    import huggingface_hub
    import yaml

    from hi4dfix.cli import main

    config = hub_arms_config(offline_hub)
    del config["difix"]["extra_arms"]["difix1"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fetch-weights", "--dry-run", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "TorchScript fixer of arm fixer [nvidia/Fixer:pretrained/pretrained_fixer_jit.pt]" in out
    assert "needed by difix.extra_arms.fixer.file" in out and "(dry run)" in out

    def hf_hub_download(repo, filename, cache_dir=None, **kwargs):  # writes huggingface_hub's cache layout
        snapshot = Path(cache_dir) / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        (snapshot.parents[1] / "refs").mkdir(parents=True, exist_ok=True)
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
        scripted_fixer(snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(W, "download_url", lambda url, destination: None)  # AlexNet: not this test's
    main(["fetch-weights", "--config", str(path)])
    plan = plan_of(config)  # now cached: the arm's own checks pass and the job reads the cached file
    assert plan.missing_weights() is None or "arm fixer" not in plan.missing_weights()
    assert plan.extra_arm_weights()["fixer"].startswith(str(offline_hub))
    assert E.is_torchscript_archive(Path(plan.extra_arm_weights()["fixer"]))


def test_extra_fixers_run_the_arms_inference(tmp_path):
    fixer = E.arm_fixer(E.extra_arm("fixer", fixer_arm(str(scripted_fixer(tmp_path / "f.pt")))).params())
    image = np.full((64, 48, 3), 0.5, np.float32)
    (out,) = fixer([image], [image])  # bf16 on the CPU: the tiny model computes in fp32 and hands bf16 back
    assert out.shape == image.shape and abs(float(out.mean()) - 0.45) < 0.01
    assert fixer.timing().views == 0 and fixer.timing().first_views == 1
    arm = E.extra_arm("difix1", {"kind": "difix", "model": str(tiny_difix_folder(tmp_path / "d")), "reference": False})
    single = E.arm_fixer(arm.params(), inference={"batch_size": 2}, long_side=48)
    assert isinstance(single, E.SingleImageFixer) and single.batch_size == 2
    outs = single([image, image], [image, image])
    assert len(outs) == 2 and outs[0].shape == image.shape and single.timing().first_views == 2
    seen = []
    E.SingleImageFixer(
        type("Recorder", (), {"batch_size": 1, "name": "r", "__call__": lambda self, i, r: seen.append(r) or i})()
    )([image], [image])
    assert seen == [None]  # the reference views never reach the model


# ---- through Snakemake on the small study ----------------------------------------------------------


@pytest.fixture(scope="module")
def extra_arm_run(small_pipeline, tmp_path_factory):
    """The small study's finished run (copied) with a TorchScript fixer (Fixer's contract, bf16) and a
    single-image tiny DiFix as extra arms: only their jobs and what reads them run."""
    source, config = small_pipeline
    workdir = tmp_path_factory.mktemp("extra_arms") / "study"
    shutil.copytree(source, workdir, symlinks=True)
    fixer = scripted_fixer(workdir / "models" / "pretrained" / "pretrained_fixer_jit.pt")
    tiny_difix_folder(workdir / "models" / "difix_single")
    config = with_arms(config, {
        "fixer": fixer_arm("models/pretrained/pretrained_fixer_jit.pt"),
        "difix1": {"kind": "difix", "model": "models/difix_single", "reference": False},
    })  # fmt: skip
    planned = planned_jobs(run_snakemake(workdir, config, "-n", "results/v0/deltas.csv"))
    run_snakemake(workdir, config, "--cores", "2", "results/v0/deltas.csv")
    return workdir, config, planned, fixer


def test_extra_arms_run_through_snakemake_and_write_delta_rows(extra_arm_run):
    workdir, config, planned, _ = extra_arm_run
    # two arms x four reserved scenes, the internal evaluation with them; nothing upstream reruns
    assert planned["evaluate_nvs"] == 8 and planned["evaluate_difix"] == 1
    assert not {"tune_difix", "tune_control", "render_scene", "pretrain_difix_base"} & set(planned)
    results = workdir / "results" / "v0"
    deltas = read_delta_csv(results / "deltas.csv")
    means = deltas[deltas.scene == "mean"].set_index(["metric", "comparison"])
    for name in ("tuned_vs_fixer", "fixer_vs_raw", "tuned_vs_difix1", "difix1_vs_raw"):
        row = means.loc[("psnr", name)]
        assert np.isfinite(row["delta"]) and row["verdict"] and row["unit"] == "across 4 scenes"
    # the fixer darkens every pixel of the raw renders: fixer − raw is its own measured change
    raw = pd.concat(pd.read_csv(p) for p in sorted((results / "nvs" / "raw").glob("*.csv")))
    fixer = pd.concat(pd.read_csv(p) for p in sorted((results / "nvs" / "fixer").glob("*.csv")))
    assert len(raw) == len(fixer) and not np.allclose(raw["psnr"], fixer["psnr"])
    scene_rows = deltas[deltas.scene != "mean"].drop_duplicates("scene")
    assert means.loc[("psnr", "tuned_vs_fixer"), "fixer"] == pytest.approx(scene_rows["fixer"].mean())
    evaluated = pd.read_csv(results / "difix" / "eval.csv")
    assert {"fixer", "difix1"} <= set(evaluated["arm"])
    eval_deltas = read_delta_csv(results / "difix" / "eval_deltas.csv")
    assert {"tuned_vs_fixer", "difix1_vs_raw"} <= set(eval_deltas["comparison"])
    assert "tuned − fixer" in (results / "deltas.md").read_text()
    assert (results / "report" / "metrics.png").stat().st_size > 0


def test_extra_arms_weights_are_in_provenance_and_checked(extra_arm_run):
    workdir, _, _, fixer = extra_arm_run
    _, record = read_provenance(workdir / "results" / "v0")
    assert set(record["weights"]) >= {"fixer", "difix1"}
    assert record["weights"]["fixer"]["sha256"] and record["weights"]["difix1"]["sha256"]
    assert set(record["predictions"]) >= {"fixer", "difix1"}
    assert check_provenance(workdir / "results" / "v0", root=workdir) == []
    copy_dir = workdir.parent / "tampered"
    shutil.copytree(workdir / "results", copy_dir / "results", symlinks=True)
    shutil.copytree(workdir / "models", copy_dir / "models")
    scripted = torch.jit.script(TinyFixer())
    with torch.no_grad():
        scripted.conv.bias.fill_(-0.2)
    scripted.save(str(copy_dir / "models" / "pretrained" / "pretrained_fixer_jit.pt"))
    problems = check_provenance(copy_dir / "results" / "v0", root=copy_dir)
    assert any("fixer weights" in p for p in problems), json.dumps(problems)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_both_extra_arms_run_in_bf16_on_the_gpu(tmp_path):
    image = np.full((96, 72, 3), 0.5, np.float32)
    fixer = E.extra_fixer(E.extra_arm("fixer", fixer_arm(str(scripted_fixer(tmp_path / "f.pt")))), device="cuda")
    (out,) = fixer([image])
    assert out.shape == image.shape and abs(float(out.mean()) - 0.45) < 0.02
    arm = E.extra_arm("difix1", {"kind": "difix", "model": str(tiny_difix_folder(tmp_path / "d")), "reference": False})
    single = E.extra_fixer(arm, device="cuda", inference={"dtype": "bfloat16", "compile": False}, long_side=48)
    assert single.fixer.model.vae.dtype == torch.bfloat16
    outs = single([image, image], [image, image])
    assert len(outs) == 2 and outs[0].shape == image.shape and np.isfinite(outs[0]).all()


# ---- tables' companions: charts and the refit column ---------------------------------------------


def extra_arm_deltas() -> pd.DataFrame:
    """A delta table of 4 scenes with an extra arm ``fixer`` between raw and tuned."""
    from hi4dfix.metrics import METRIC_COLUMNS
    from hi4dfix.stats import BootstrapConfig
    from hi4dfix.tables import delta_table

    rng = np.random.default_rng(0)
    rows = []
    for arm, offset in (("raw", 0.0), ("base", 1.0), ("tuned", 1.5), ("fixer", 1.2)):
        for scene in ("s1", "s2", "s3", "s4"):
            for frame in range(4):
                metrics = dict.fromkeys(METRIC_COLUMNS, 0.5)
                metrics.update(psnr=20 + offset + rng.normal(0, 0.3), ssim=0.5 + offset / 10, lpips=0.5 - offset / 10)
                rows.append({"arm": arm, "scene": scene, "frame": frame, "cam": 16, **metrics})
    return delta_table(pd.DataFrame(rows), ("psnr", "ssim", "lpips"), bootstrap=BootstrapConfig(n_resamples=200))


def test_metric_charts_draw_the_extra_arms_and_their_comparisons():
    from hi4dfix.report.figures import VERDICT_COLORS, metric_bars

    deltas = extra_arm_deltas()
    figure = metric_bars(deltas)
    panels = [ax for ax in figure.axes if ax.get_title()]
    labels = [line.get_label() for line in panels[0].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["raw render (no DiFix)", "base DiFix", "tuned DiFix", "extra arm fixer"]
    lower = [ax for ax in figure.axes if not ax.get_title() and ax.containers]
    drawn = {c.lines[0].get_gid(): c for c in lower[0].containers}
    rows = deltas[(deltas.metric == "psnr") & deltas.comparison.isin(["tuned_vs_fixer", "fixer_vs_raw"])]
    assert len(rows) == 10 and all(f"{r.scene}@{r.comparison}" in drawn for r in rows.itertuples())
    mean = rows[(rows.scene == "mean") & (rows.comparison == "fixer_vs_raw")].iloc[0]
    point = drawn["mean@fixer_vs_raw"].lines[0]
    assert point.get_ydata()[0] == pytest.approx(mean.delta) and point.get_color() == VERDICT_COLORS[mean.verdict]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "tuned − fixer" in legend and "fixer − raw" in legend
    names = ["tuned − base", "tuned − raw", "base − raw", "tuned − fixer", "fixer − raw"]
    markers = {h.get_marker() for h in figure.legends[0].legend_handles if h.get_label() in names}
    assert len(markers) == 5  # each comparison its own marker


def test_difix3d_plus_refits_the_extra_arms_as_every_fixer_arm():
    from hi4dfix.evaluate import with_refit_column

    table = pd.DataFrame({"comparison": ["tuned_vs_fixer", "fixer_vs_raw", "base_vs_raw"]})
    assert list(with_refit_column(table, "difix3d+")["refit"]) == ["tuned+fixer", "fixer", "base"]
    assert list(with_refit_column(table, "postfix")["refit"]) == ["none"] * 3


def test_an_official_pkl_as_an_extra_arm_needs_sd_turbo(tmp_path, offline_hub):
    pkl = tmp_path / "model_1000.pkl"
    torch.save({"state_dict_unet": {}}, pkl)  # no hi4dfix config: an official Difix pkl, rebuilt on SD-Turbo
    config = with_arms(default_config(), {"difix_pkl": {"kind": "difix", "model": str(pkl), "reference": True}})
    config["difix"]["hub_cache_dir"] = str(offline_hub)
    [item] = [item for item in W.required_weights(config) if item.name == "SD-Turbo base"]
    assert item.source == "stabilityai/sd-turbo" and item.needed_by == (
        "difix.extra_arms.difix_pkl.model (pkls rebuild on it)",
    )  # fmt: skip
