"""The reserved-scene policy by content, through Snakemake's command line on the small study.

One run materializes the small study's seven scenes and passes its content check (the distinct
synthetic captures are not flagged, two of them `dance` like a reserved one); each test then
works in a copy of that folder: a copy of a reserved scene under a new name (byte copy, JPEG
re-encode, 0.5x resize) must be refused before any render or triplet exists, an overlay may not
drop a reserved scene, and a changed source image reruns only its scene's chain.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from content_fixtures import byte_copy, jpeg_reencoded_copy, mirrored_copy, resized_copy
from hi4dfix.io import read_samples, write_image
from workflow_helpers import planned_jobs, run_snakemake, small_config

RESERVED, RESERVED_DIR = "hi4d_pair15_fight", "pair15/fight15"
SCENES = [
    "hi4d_pair00_dance", "hi4d_pair01_talk", "hi4d_pair02_dance",
    "hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback",
]  # fmt: skip
TARGETS = [*(f"results/scenes/{scene}" for scene in SCENES), "results/v0/content_check.json"]
SYNTHETIC = "results/synthetic_hi4d"


@pytest.fixture(scope="module")
def materialized(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("content_policy") / "study"
    run_snakemake(workdir, small_config(), "--cores", "2", *TARGETS)
    return workdir


def _copy_study(materialized: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "study"
    shutil.copytree(materialized, workdir, symlinks=True)  # copy2 keeps times: nothing is stale
    return workdir


def test_the_studys_distinct_scenes_pass_and_nothing_is_stale(materialized):
    check = yaml.safe_load((materialized / "results/v0/content_check.json").read_text())
    assert set(check["difix_scenes"]) == {"hi4d_pair00_dance", "hi4d_pair01_talk", "hi4d_pair02_dance"}
    assert len(set(check["difix_scenes"].values()) | set(check["reserved_scenes"].values())) == 7
    assert planned_jobs(run_snakemake(materialized, small_config(), "-n", *TARGETS)) == {}


@pytest.mark.parametrize(
    "make_copy, scene, kind",
    [
        (byte_copy, "hi4d_pair03_fight", "pixel-identical"),
        (jpeg_reencoded_copy, "hi4d_pair04_fight", "near-copies"),
        (resized_copy, "hi4d_pair05_fight", "near-copies"),
        (mirrored_copy, "hi4d_pair06_fight", "near-copies"),
    ],
    ids=["byte-copy", "jpeg-reencoded", "half-size", "mirrored"],
)
def test_a_copy_of_a_reserved_scene_under_a_new_name_is_refused_before_any_render(
    materialized, tmp_path, make_copy, scene, kind
):
    workdir = _copy_study(materialized, tmp_path)
    pair, action = scene.split("_")[1], scene.split("_")[2]
    make_copy(workdir / SYNTHETIC / RESERVED_DIR, workdir / SYNTHETIC / pair / f"{action}{pair[4:]}")
    config = small_config()
    config["data"]["scenes"].append(scene)
    config["versions"]["v0"]["difix_train"] = ["hi4d_pair00_dance", scene]
    result = run_snakemake(workdir, config, "--cores", "1", "results/v0/triplets.json", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"version v0: DiFix scene {scene} holds the content of reserved scene {RESERVED}" in output
    assert f"{scene}/images/" in output and f"{RESERVED}/images/" in output  # an example file of each
    count = "0 near-copies" if kind == "pixel-identical" else "0 pixel-identical"
    assert count in output
    assert not (workdir / "results/v0/triplets.json").exists()
    assert not (workdir / "results/v0/content_check.json").exists()
    assert not (workdir / "results/renders").exists(), "the check runs before the renders it guards"


def test_an_internal_evaluation_scene_copying_a_training_scene_is_refused(materialized, tmp_path):
    workdir = _copy_study(materialized, tmp_path)
    scene = "hi4d_pair07_dance"  # another pair than the training scenes: only its content gives it away
    byte_copy(workdir / SYNTHETIC / "pair00/dance00", workdir / SYNTHETIC / "pair07/dance07")
    config = small_config()
    config["data"]["scenes"].append(scene)
    config["versions"]["v0"]["difix_eval"] = [scene]
    result = run_snakemake(workdir, config, "--cores", "1", "results/v0/triplets.json", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"version v0: internal-evaluation scene {scene} holds the content of training scene hi4d_pair00_dance" in (
        output
    )
    assert "would measure DiFix on its own training data" in output
    assert not (workdir / "results/v0/triplets.json").exists()
    assert not (workdir / "results/renders").exists()


def test_a_scene_linked_to_a_reserved_sequence_is_refused_at_dag_build(materialized, tmp_path):
    workdir = _copy_study(materialized, tmp_path)
    scene = "hi4d_pair06_talk"
    (workdir / SYNTHETIC / "pair06").mkdir()
    (workdir / SYNTHETIC / "pair06/talk06").symlink_to(Path("../pair15/fight15"), target_is_directory=True)
    config = small_config()
    config["data"]["scenes"].append(scene)
    config["versions"]["v0"]["difix_train"] = ["hi4d_pair00_dance", scene]
    result = run_snakemake(workdir, config, "-n", "results/v0/triplets.json", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{RESERVED} and {scene} resolve to the same sequence folder {RESERVED_DIR}" in output
    assert f"would make reserved scene {RESERVED}'s data a DiFix sample (version v0 difix_train)" in output


def test_control_triplets_holding_copies_of_a_reserved_scene_are_refused_before_the_control_trains(
    materialized, tmp_path
):
    workdir = _copy_study(materialized, tmp_path)
    outside = tmp_path / "elsewhere"  # neither data.root nor results/: only the content gives it away
    outside.mkdir()
    images = sorted((workdir / "results/scenes" / RESERVED / "images").rglob("*.png"))[:3]
    copies = []
    for i, image in enumerate(images):
        copies.append(outside / f"{i}.png")
        shutil.copy(image, copies[-1])
    triplets = outside / "control.json"
    train = {f"t{i}": {"image": str(p), "target_image": str(p), "ref_image": str(p)} for i, p in enumerate(copies)}
    triplets.write_text(json.dumps({"train": train}))
    config = small_config()
    config["difix"]["control"]["triplets"] = str(triplets)
    # a base without a job (the check does not read it): no pretraining before the refusal
    config["difix"]["base"] = "tiny-random"
    result = run_snakemake(workdir, config, "--cores", "1", "results/v0/difix/control/model.pkl", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"difix.control.triplets {triplets}: 3 images are copies of reserved scene {RESERVED}'s" in output
    assert not (workdir / "results/v0/difix/control/model.pkl").exists()
    assert not (workdir / "results/difix_control/content_check.json").exists()


def test_an_overlay_dropping_a_reserved_scene_is_refused_at_dag_build(materialized, tmp_path):
    workdir = _copy_study(materialized, tmp_path)
    kept = [scene for scene in SCENES[3:] if scene != RESERVED]
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "policy": {"reserved_scenes": kept},
                "versions": {"v0": {"difix_train": ["hi4d_pair00_dance", RESERVED], "nvs_eval": kept}},
            }
        )
    )
    # run_snakemake's --configfile takes the study config, then this overlay over it
    result = run_snakemake(
        workdir, small_config(), str(overlay), "--cores", "1", "results/v0/triplets.json", check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"policy.reserved_scenes drops {RESERVED}" in output
    assert not (workdir / "results/v0/triplets.json").exists()
    assert not (workdir / "results/renders").exists()


def test_an_overlay_may_add_a_reserved_scene(materialized, tmp_path):
    config = small_config()
    config["policy"]["reserved_scenes"] = [*SCENES[3:], "hi4d_pair01_talk"]
    config["versions"]["v0"].update(difix_train=["hi4d_pair00_dance"], nvs_eval=[*SCENES[3:], "hi4d_pair01_talk"])
    jobs = planned_jobs(run_snakemake(_copy_study(materialized, tmp_path), config, "-n", "results/v0/triplets.json"))
    assert jobs["build_triplets"] == 1 and jobs["check_reserved_content"] == 1


def test_a_changed_source_image_or_mask_reruns_only_its_scenes_chain(materialized, tmp_path):
    workdir = _copy_study(materialized, tmp_path)
    sequence = workdir / SYNTHETIC / "pair01/talk01"
    image = sequence / "images/16/000012.jpg"
    original = image.read_bytes()
    pixels = read_samples(image)
    write_image(image, np.ascontiguousarray(pixels[:, ::-1]), quality=90)  # a "fixed" image
    result = run_snakemake(workdir, small_config(), "-n", *TARGETS)
    assert planned_jobs(result) == {"materialize_scene": 1, "check_reserved_content": 1}
    assert "scene=hi4d_pair01_talk" in result.stdout
    assert result.stdout.count("scene=") == 1
    # the old bytes back (a new time, the recorded content): nothing to do
    image.write_bytes(original)
    assert planned_jobs(run_snakemake(workdir, small_config(), "-n", *TARGETS)) == {}
    mask = sequence / "seg/img_seg_mask/28/all/000011.png"
    write_image(mask, 255 - read_samples(mask))
    result = run_snakemake(workdir, small_config(), "-n", *TARGETS)
    assert planned_jobs(result) == {"materialize_scene": 1, "check_reserved_content": 1}
    assert "scene=hi4d_pair01_talk" in result.stdout
