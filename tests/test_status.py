"""`hi4dfix versions` and `hi4dfix check-data`: what exists, and every problem of a tree at once."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import FIXTURE_SYNTH_CONFIG
from hi4dfix.cli import main
from hi4dfix.synth import generate_sequence
from workflow_helpers import REPO


def test_versions_lists_splits_and_targets(tmp_path, capsys, monkeypatch):
    (tmp_path / "results/v0/difix").mkdir(parents=True)
    (tmp_path / "results/v0/triplets.json").write_text("{}")
    assert main(["versions", "--config", str(REPO / "config/config.yaml"), "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "difix_train hi4d_pair00_dance, hi4d_pair01_talk" in out
    assert "[x] results/v0/triplets.json" in out and "[ ] results/v0/deltas.csv" in out


def test_check_data_lists_every_problem_and_fails(synthetic_sequence, tmp_path, capsys):
    root = tmp_path / "hi4d"
    good = root / "pair00" / "dance00"
    shutil.copytree(synthetic_sequence, good)
    assert main(["check-data", str(root)]) == 0
    assert "1 sequence(s), 0 error(s)" in capsys.readouterr().out

    bad = root / "pair01" / "talk01"
    shutil.copytree(synthetic_sequence, bad)
    for frame_file in (bad / "images" / "16").iterdir():
        frame_file.unlink()
    meta = dict(np.load(bad / "meta.npz", allow_pickle=True))
    del meta["mono_cam"]
    np.savez(bad / "meta.npz", **meta)
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out
    assert "mono_cam" in out and "images/16" in out  # both problems, in one run


def test_check_data_requires_the_configs_scenes(synthetic_sequence, tmp_path, capsys):
    root = tmp_path / "hi4d"
    shutil.copytree(synthetic_sequence, root / "pair00" / "dance00")
    assert main(["check-data", str(root), "--config", str(REPO / "config/config.yaml")]) == 1
    assert "pair15/fight15: 1 problem(s)" in capsys.readouterr().out


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives: only decoding fails


@pytest.mark.parametrize("workers", ["1", "3"])
def test_check_data_decode_finds_truncated_images_and_masks(synthetic_sequence, tmp_path, capsys, workers):
    root = tmp_path / "hi4d"
    sequence = root / "pair00" / "dance00"
    shutil.copytree(synthetic_sequence, sequence)
    image = sequence / "images" / "28" / "000012.jpg"
    mask = sequence / "seg" / "img_seg_mask" / "64" / "all" / "000013.png"
    _truncate(image)
    _truncate(mask)
    assert main(["check-data", str(root)]) == 0  # headers alone pass
    capsys.readouterr()
    assert main(["check-data", str(root), "--decode", "--workers", workers]) == 1
    out = capsys.readouterr().out
    assert f"error: {image}: unreadable image" in out and f"error: {mask}: unreadable image" in out
    assert "1 sequence(s), 2 error(s)" in out


def test_check_data_reports_non_finite_distortion(synthetic_sequence, tmp_path, capsys):
    root = tmp_path / "hi4d"
    sequence = root / "pair00" / "dance00"
    shutil.copytree(synthetic_sequence, sequence)
    cameras = sequence / "cameras" / "rgb_cameras.npz"
    arrays = dict(np.load(cameras))
    arrays["dist_coeffs"][0, 0] = np.nan
    np.savez(cameras, **arrays)
    assert main(["check-data", str(root)]) == 1
    assert "camera 4: dist_coeffs are not all finite" in capsys.readouterr().out


def test_check_data_finds_non_finite_smpl_vertices(synthetic_sequence, tmp_path, capsys):
    root = tmp_path / "hi4d"
    sequence = shutil.copytree(synthetic_sequence, root / "pair00" / "dance00")
    smpl = sequence / "smpl" / "000012.npz"
    arrays = dict(np.load(smpl))
    arrays["verts"][1, 7, 2] = np.nan
    np.savez(smpl, **arrays)
    assert main(["check-data", str(root)]) == 1
    assert f"{smpl}: frame 12: verts hold 1 NaN or infinite value(s) (first of person 1)" in capsys.readouterr().out


def test_check_data_with_two_trees_reports_copied_sequences(synthetic_sequence, tmp_path, capsys):
    from content_fixtures import jpeg_reencoded_copy

    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(synthetic_sequence, first / "pair00" / "dance00")
    generate_sequence(second / "pair05" / "dance05", "hi4d_pair05_dance", FIXTURE_SYNTH_CONFIG)
    assert main(["check-data", str(first), str(second)]) == 0
    assert "across the 2 trees: no (near-)duplicate sequence pair(s)" in capsys.readouterr().out
    jpeg_reencoded_copy(synthetic_sequence, second / "pair03" / "dance03")
    assert main(["check-data", str(first), str(second)]) == 1
    out = capsys.readouterr().out
    assert "across the 2 trees: 1 (near-)duplicate sequence pair(s)" in out
    assert f"{first / 'pair00/dance00'} and {second / 'pair03/dance03'}: 24 of 24 images alike" in out


def test_check_data_given_an_overlay_asks_for_the_full_config(synthetic_sequence, tmp_path, capsys):
    assert main(["check-data", str(synthetic_sequence), "--config", str(REPO / "config/hi4d.yaml")]) != 0
    err = capsys.readouterr().err
    assert "config/hi4d.yaml: not a full study config" in err and "pass the full config" in err


def test_versions_lists_every_grid_variant_and_the_cards_expected_outputs(tmp_path, capsys):
    from hi4dfix.cli import load_workflow_config
    from hi4dfix.report.card import version_card_html
    from hi4dfix.study import Study

    (tmp_path / "results/v0").mkdir(parents=True)
    (tmp_path / "results/v0/triplets.json").write_text("{}")
    args = ["--config", str(REPO / "config/config.yaml"), "--configfile", str(REPO / "config/ablations.yaml")]
    assert main(["versions", *args, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    blocks = {line.split(": ", 1)[0]: line for line in out.splitlines() if line.startswith(("memo.", "training."))}
    assert len([name for name in blocks if name.startswith("memo.")]) == 12  # as the README says
    assert len([name for name in blocks if name.startswith("training.")]) == 6
    header = "grid memo: 12 variants of v0 (11 versions of their own; memo.estimated.same_time.train2 = v0)"
    assert header in out and f"`{header}`" in (REPO / "README.md").read_text()  # the README quotes it
    assert blocks["memo.estimated.same_time.train2"].startswith(
        "memo.estimated.same_time.train2: identical to the parent v0"
    )
    assert "grid training: 6 variants of v0 (5 versions of their own; training.full_unet.image = v0)" in out
    # a variant training on v0's triplets shows them as made, and says where they are
    assert (
        "[x] results/training.lora8_all.image/triplets.json (shared: made as results/v0/triplets.json, "
        "same triplet inputs)" in out
    )
    # each version's listed outputs are its card's expected outputs, in order
    study = Study.from_config(load_workflow_config(REPO / "config/config.yaml", [REPO / "config/ablations.yaml"]))
    for name in ("v0", "memo.gt.mixed.train4", "training.lora8_all.person"):
        version = study.versions[name]
        listed = ("\n" + out).split(f"\n{name}: ", 1)[1].split("expected outputs ([x]: exists):\n", 1)[1].splitlines()
        listed = [line[6:].split(" (shared", 1)[0] for line in listed[: len(version.expected_outputs)]]
        assert listed == list(version.expected_outputs) and len(listed) == 5
        card = version_card_html(version, study.reserved_scenes, {})
        assert all(f"<code>{path}</code>" in card for path in listed)
