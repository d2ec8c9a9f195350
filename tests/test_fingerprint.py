"""Content fingerprints and the reserved-scene policy by content (hi4dfix.fingerprint)."""

from __future__ import annotations

import io
import itertools
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from content_fixtures import byte_copy, jpeg_reencoded_copy, mirrored_copy, resized_copy
from hi4dfix.fingerprint import (
    FINGERPRINT_FILE,
    NEAR_COPY_BITS,
    TURNS,
    ContentPolicyError,
    check_reserved_content,
    compare_fingerprints,
    content_sha256,
    fingerprint_scene_dir,
    fingerprint_sequence,
    image_entry,
    load_fingerprint,
    make_fingerprint,
)
from hi4dfix.hi4d import read_sequence
from hi4dfix.materialize import materialize_scene
from hi4dfix.synth import SynthConfig, generate_sequence

RESERVED = "hi4d_pair17_dance"
SAME_ACTION = "hi4d_pair00_dance"  # another capture of the same action
SYNTH = SynthConfig(num_frames=2, width=120, height=160)  # the default study's frame size


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Materialized scenes by name: two different captures of `dance`, and copies of the reserved one."""
    root = tmp_path_factory.mktemp("content")
    sources = {name: generate_sequence(root / "src" / name, name, SYNTH) for name in (RESERVED, SAME_ACTION)}
    sources["hi4d_pair02_dance"] = generate_sequence(root / "src" / "p02", "hi4d_pair02_dance", SYNTH)
    sources["byte_copy"] = byte_copy(sources[RESERVED], root / "src" / "byte")
    sources["jpeg_copy"] = jpeg_reencoded_copy(sources[RESERVED], root / "src" / "jpeg")
    sources["resized_copy"] = resized_copy(sources[RESERVED], root / "src" / "half")
    sources["mirrored_copy"] = mirrored_copy(sources[RESERVED], root / "src" / "mirror")
    return {
        name: materialize_scene(read_sequence(path), root / "scenes" / name, name).root
        for name, path in sources.items()
    }


def test_materialize_writes_the_fingerprint_its_files_give(scenes):
    path = scenes[RESERVED] / FINGERPRINT_FILE
    written = json.loads(path.read_text())
    assert len(written["images"]) == 8 * SYNTH.num_frames
    assert written["content_sha256"] == content_sha256(written["images"])
    assert written == fingerprint_scene_dir(scenes[RESERVED])  # the hash is of the decoded pixels
    # a byte copy has the same content under another name; a re-encode has other pixels
    assert (
        json.loads((scenes["byte_copy"] / FINGERPRINT_FILE).read_text())["content_sha256"] == written["content_sha256"]
    )
    assert load_fingerprint(scenes["jpeg_copy"])["content_sha256"] != written["content_sha256"]


@pytest.mark.parametrize(
    "copy, kind",
    [
        ("byte_copy", "pixel-identical"),
        ("jpeg_copy", "near-copy"),
        ("resized_copy", "near-copy"),
        ("mirrored_copy", "near-copy"),
    ],
)
def test_copies_of_a_reserved_scene_are_refused_naming_both_scenes_and_a_file(scenes, copy, kind):
    reserved = load_fingerprint(scenes[RESERVED])
    matches = compare_fingerprints(load_fingerprint(scenes[copy]), reserved)
    assert len(matches) == len(reserved["images"])  # every image of the copy is caught
    assert {m.kind for m in matches} == {kind}
    with pytest.raises(ContentPolicyError) as error:
        check_reserved_content("v9", {copy: load_fingerprint(scenes[copy])}, {RESERVED: reserved})
    message = str(error.value)
    assert (
        message.startswith("version v9: ")
        and f"reserved scene {RESERVED}" in message
        and f"DiFix scene {copy}" in message
    )
    assert f"{copy}/images/" in message and f"{RESERVED}/images/" in message


def test_a_mirrored_copy_matches_its_original_turned():
    from skimage import data

    photo = data.astronaut()
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[100:400, 150:350] = 255
    original = make_fingerprint("original", [image_entry(0, 0, "astronaut", photo, mask)])
    for name, turn in TURNS.items():
        copy = image_entry(0, 0, "copy", np.ascontiguousarray(turn(photo)), np.ascontiguousarray(turn(mask)))
        (match,) = compare_fingerprints(make_fingerprint("copy", [copy]), original)
        assert (match.kind, match.turn) == ("near-copy", name) and match.bits <= NEAR_COPY_BITS, name
        assert str(match).endswith(f"original/astronaut {name}")


def test_different_captures_are_not_flagged_and_stay_well_apart(scenes):
    prints = {name: load_fingerprint(scenes[name]) for name in (RESERVED, SAME_ACTION, "hi4d_pair02_dance")}
    for a, b in itertools.combinations(prints, 2):
        assert compare_fingerprints(prints[a], prints[b]) == []
        closest = compare_fingerprints(prints[a], prints[b], max_bits=64)
        assert min(m.bits for m in closest) > NEAR_COPY_BITS + 2, (a, b)
    check_reserved_content("v0", {SAME_ACTION: prints[SAME_ACTION]}, {RESERVED: prints[RESERVED]})


def _jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=75)
    return np.asarray(Image.open(buffer))


def _half(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def test_photographs_copies_are_caught_and_different_photographs_are_not():
    """Real-photo content: scikit-image's bundled samples (cat is chelsea, so it is left out)."""
    from skimage import data

    photos = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "camera", "rocket", "coins")}

    def entry(name, image):
        height, width = image.shape[:2]
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 255  # a "person" in the middle
        return image_entry(0, 0, name, image, mask)

    originals = make_fingerprint("photos", [entry(name, photo) for name, photo in photos.items()])
    for name, photo in photos.items():
        for copy in (_jpeg(photo), _half(photo)):
            (match,) = compare_fingerprints(make_fingerprint("copy", [entry(name, copy)]), originals)
            assert match.other_image == name and match.bits <= NEAR_COPY_BITS
    for a, b in itertools.combinations(photos, 2):
        assert (
            compare_fingerprints(make_fingerprint(a, [entry(a, photos[a])]), make_fingerprint(b, [entry(b, photos[b])]))
            == []
        )


def test_blank_images_are_never_near_copies():
    black = np.zeros((32, 24, 3), np.uint8)
    entry = image_entry(0, 0, "black.png", black, np.zeros((32, 24), np.uint8))
    assert entry["frame_phash"] is None and entry["person_phash"] is None
    assert compare_fingerprints(make_fingerprint("a", [entry]), make_fingerprint("b", [entry])) == []


def test_sequence_fingerprints_find_a_copied_sequence(scenes, tmp_path):
    source = generate_sequence(tmp_path / "a", "hi4d_pair01_talk", SynthConfig(num_frames=1, width=48, height=64))
    copy = jpeg_reencoded_copy(source, tmp_path / "b")
    other = generate_sequence(tmp_path / "c", "hi4d_pair03_talk", SynthConfig(num_frames=1, width=48, height=64))
    a, b, c = (fingerprint_sequence(path, workers=2) for path in (source, copy, other))
    assert len(compare_fingerprints(b, a)) == 8
    assert compare_fingerprints(c, a) == []
