"""Pretrained weights for offline compute nodes: what a config needs, `hi4dfix fetch-weights`, and the
DAG-build error naming it. No network: the libraries' downloaders are stubbed, Hub lookups are offline."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from hi4dfix import cli, weights
from hi4dfix.difix.pretrained_dir import HUB_ALLOW_PATTERNS
from workflow_helpers import default_config, run_snakemake

ALEXNET = "alexnet-owt-7be5be79.pth"
VGG16 = "vgg16-397923af.pth"


@pytest.fixture
def caches(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty private caches, the Hub offline: nothing here can reach the internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "url_size", lambda url: pytest.fail(f"HEAD {url} in a test"))
    return {"torch": tmp_path / "torch" / "hub" / "checkpoints", "hf": tmp_path / "hf"}


def sd_turbo_config(hub_cache: Path, **tuning) -> dict:
    config = copy.deepcopy(default_config())
    config["difix"].update(base="nvidia/difix_ref", preset="sd-turbo", hub_cache_dir=str(hub_cache))
    config["difix"]["control"] = {"enabled": False}  # as config/hi4d.yaml: a released base has no own data here
    config["versions"]["v0"]["tuning"].update(tuning)
    return config


def fill_hub_cache(cache_dir: Path, repo: str, files=weights.HUB_REQUIRED_FILES) -> Path:
    """A repository in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/...)."""
    commit = hashlib.sha1(repo.encode()).hexdigest()
    root = Path(cache_dir) / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(b"x" * 10)
    return snapshot


# ---- what a config needs ------------------------------------------------------------------------


def test_default_config_needs_only_alexnet_for_the_metric(caches):
    config = default_config()
    assert weights.required_weights(config) == []
    [alex] = weights.wanted_weights(config)
    assert alex.destination == caches["torch"] / ALEXNET and alex.needed_by == ("metrics (LPIPS)",)


def test_sd_turbo_with_perceptual_tuning_needs_the_hub_models_and_vgg(caches):
    config = sd_turbo_config(caches["hf"], lambda_lpips=1.0, lambda_gram=0.0)
    required = {item.source: item for item in weights.required_weights(config)}
    assert set(required) == {"nvidia/difix_ref", "stabilityai/sd-turbo", f"https://download.pytorch.org/models/{VGG16}"}
    assert required["nvidia/difix_ref"].destination == caches["hf"]
    assert required[f"https://download.pytorch.org/models/{VGG16}"].needed_by == ("versions.v0.tuning.lambda_lpips",)
    config["versions"]["v0"]["tuning"].update(lambda_lpips=0.5, lpips_net="alex", lambda_gram=1.0)
    config["metrics"]["require_lpips"] = True
    by_file = {item.destination.name: item.needed_by for item in weights.wanted_weights(config) if item.kind == "url"}
    assert by_file == {
        VGG16: ("versions.v0.tuning.lambda_gram",),
        ALEXNET: ("versions.v0.tuning.lambda_lpips", "metrics.require_lpips", "metrics (LPIPS)"),
    }


def test_local_bases_need_nothing_from_the_hub(caches, tmp_path):
    folder = tmp_path / "difix_ref"  # a local base folder whose saved config names a local SD-Turbo
    folder.mkdir()
    (folder / "hi4dfix_config.json").write_text('{"preset": "sd-turbo", "base_model_id": "%s"}' % folder)
    config = sd_turbo_config(caches["hf"])
    config["difix"]["base"] = str(folder)
    assert weights.required_weights(config) == []
    config["difix"]["base"] = str(tmp_path / "model_300.pkl")  # official pkls rebuild on SD-Turbo
    assert [item.source for item in weights.required_weights(config)] == ["stabilityai/sd-turbo"]
    assert not weights.is_hub_id("results/difix_base/tiny/model.pkl") and not weights.is_hub_id("pretrain")
    assert weights.is_hub_id("nvidia/difix_ref")


def test_hub_presence_is_read_offline_from_the_cache(caches):
    [item] = [i for i in weights.required_weights(sd_turbo_config(caches["hf"])) if i.source == "nvidia/difix_ref"]
    assert not weights.is_present(item)
    fill_hub_cache(caches["hf"], "nvidia/difix_ref", weights.HUB_REQUIRED_FILES[:-1])
    assert not weights.is_present(item)  # the VAE weights are missing
    fill_hub_cache(caches["hf"], "nvidia/difix_ref")
    assert weights.is_present(item) and weights.local_size(item) == 10 * len(weights.HUB_REQUIRED_FILES)


# ---- the command ---------------------------------------------------------------------------------


@pytest.fixture
def stub_downloads(monkeypatch):
    """The libraries' downloaders replaced by ones that write what they would; calls recorded."""
    import huggingface_hub
    import torch.hub

    calls = []

    def snapshot_download(repo, cache_dir=None, allow_patterns=None, **kwargs):
        calls.append(("hub", repo, cache_dir, tuple(allow_patterns)))
        return str(fill_hub_cache(Path(cache_dir), repo))

    def download_url_to_file(url, dst, hash_prefix=None, progress=True):
        calls.append(("url", url, dst, hash_prefix))
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download_url_to_file)
    return calls


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fetch_weights_fills_the_caches_the_jobs_read(caches, stub_downloads, tmp_path, capsys):
    config = write_config(tmp_path, sd_turbo_config(caches["hf"], lambda_gram=1.0))
    caches["torch"].mkdir(parents=True)
    (caches["torch"] / ALEXNET).write_bytes(b"cached")
    assert cli.main(["fetch-weights", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "fetched 3 of 3 item(s)" in out and out.startswith("missing") and "\npresent" in out
    assert sorted(call[:2] for call in stub_downloads) == [
        ("hub", "nvidia/difix_ref"), ("hub", "stabilityai/sd-turbo"),
        ("url", f"https://download.pytorch.org/models/{VGG16}"),
    ]  # fmt: skip
    hub_call = next(call for call in stub_downloads if call[0] == "hub")
    assert hub_call[2] == str(caches["hf"]) and hub_call[3] == tuple(HUB_ALLOW_PATTERNS)
    url_call = next(call for call in stub_downloads if call[0] == "url")
    assert url_call[2] == str(caches["torch"] / VGG16) and url_call[3] == "397923af"  # torchvision's hash check
    assert weights.missing_weights_message(yaml.safe_load(config.read_text())) is None

    stub_downloads.clear()
    assert cli.main(["fetch-weights", "--config", str(config)]) == 0
    assert stub_downloads == [] and "0 of 4 item(s) to fetch" in capsys.readouterr().out


def test_dry_run_lists_size_and_destination_and_fetches_nothing(caches, stub_downloads, tmp_path, capsys, monkeypatch):
    base = write_config(tmp_path, default_config())
    override = tmp_path / "sd.yaml"  # merged over the base, as snakemake --configfile
    override.write_text(yaml.safe_dump({"difix": {"base": "nvidia/difix_ref", "preset": "sd-turbo",
                                                  "hub_cache_dir": str(caches["hf"])}}))
    fill_hub_cache(caches["hf"], "stabilityai/sd-turbo")
    monkeypatch.setattr(weights, "url_size", lambda url: 244_408_911)
    assert cli.main(["fetch-weights", "--dry-run", "--config", str(base), "--configfile", str(override)]) == 0
    lines = capsys.readouterr().out.splitlines()
    difix = next(line for line in lines if "[nvidia/difix_ref]" in line)
    assert difix.split()[:2] == ["missing", "unknown"] and difix.endswith(f"-> {caches['hf']}")  # offline Hub
    turbo = next(line for line in lines if "[stabilityai/sd-turbo]" in line)
    assert turbo.startswith("present") and "110 B" in turbo
    alex = next(line for line in lines if ALEXNET in line)
    assert "244.41 MB" in alex and alex.endswith(str(caches["torch"] / ALEXNET))
    assert lines[-1] == "2 of 3 item(s) to fetch (dry run)" and stub_downloads == []


def test_a_failed_download_is_reported_and_the_others_go_on(caches, stub_downloads, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    def unreachable(repo, **kwargs):
        raise OSError("Hub unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    config = write_config(tmp_path, sd_turbo_config(caches["hf"]))
    assert cli.main(["fetch-weights", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "nvidia/difix_ref" in captured.err and "Hub unreachable" in captured.err
    assert (caches["torch"] / ALEXNET).is_file()  # the AlexNet download still ran


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    config = default_config()
    config["difix"]["preset"] = "huge"
    assert cli.main(["fetch-weights", "--config", str(write_config(tmp_path, config))]) == 1
    assert "huge" in capsys.readouterr().err
    assert cli.main(["fetch-weights", "--config", str(tmp_path / "nope.yaml")]) == 1


# ---- the workflow refuses to start without them -------------------------------------------------------


def test_missing_weights_are_listed_by_a_preview_and_stop_a_run_before_its_first_job(caches, tmp_path):
    config = sd_turbo_config(caches["hf"], lambda_gram=1.0)
    preview = run_snakemake(tmp_path / "run", config, "-n", "results/v0/deltas.csv", check=False)
    output = preview.stdout + preview.stderr
    assert preview.returncode == 0 and "hi4dfix fetch-weights" in output  # a preview still plans
    for named in ("nvidia/difix_ref", "stabilityai/sd-turbo", "difix.base", "versions.v0.tuning.lambda_gram", VGG16):
        assert named in output
    run = run_snakemake(tmp_path / "run", config, "--cores", "1", "results/scenes/hi4d_pair00_dance", check=False)
    assert run.returncode != 0 and "hi4dfix fetch-weights" in run.stdout + run.stderr
    assert not (tmp_path / "run" / "results").exists()  # no job ran
    fill_hub_cache(caches["hf"], "nvidia/difix_ref")
    fill_hub_cache(caches["hf"], "stabilityai/sd-turbo")
    caches["torch"].mkdir(parents=True)
    (caches["torch"] / VGG16).write_bytes(b"cached")
    result = run_snakemake(tmp_path / "run", config, "-n", "results/v0/deltas.csv", check=False)
    assert "fetch-weights" not in result.stdout + result.stderr and result.returncode == 0, result.stderr[-2000:]


def test_a_base_of_another_preset_is_refused_naming_both_presets_and_the_file(tmp_path):
    """A local difix.base whose saved preset is not difix.preset fails at DAG build, by name, instead
    of a job that would look for SD-Turbo on the Hub (an official pkl read with preset tiny)."""
    import torch

    from hi4dfix.difix.config import DifixConfig
    from hi4dfix.difix.model import build_random_difix
    from hi4dfix.difix.official_pkl import OFFICIAL_MODEL_KEYS, save_checkpoint

    tiny = save_checkpoint(tmp_path / "tiny.pkl", build_random_difix(DifixConfig(preset="tiny")))
    official = tmp_path / "model_300.pkl"  # Difix's own layout: no hi4dfix_config, so sd-turbo
    torch.save({key: {} for key in OFFICIAL_MODEL_KEYS}, official)
    config = copy.deepcopy(default_config())
    config["difix"].update(base=str(tiny), preset="sd-turbo")
    message = weights.preset_mismatch_message(config)
    assert f"difix.preset is 'sd-turbo', but difix.base ({tiny}) holds a 'tiny' model" in message
    config["difix"].update(base=str(tiny), preset="tiny")
    assert weights.preset_mismatch_message(config) is None
    config["difix"].update(base=str(official), preset="tiny")
    message = weights.preset_mismatch_message(config)
    assert f"difix.preset is 'tiny', but difix.base ({official}) holds a 'sd-turbo' model" in message
    assert "official Difix pkl" in message

    result = run_snakemake(tmp_path / "run", config, "-n", "results/v0/difix/model.pkl", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
