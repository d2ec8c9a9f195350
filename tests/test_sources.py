"""Source files tracked by content at DAG build (hi4dfix.sources)."""

from __future__ import annotations

import os

from hi4dfix.sources import NEW, SOURCES_FILE, record_sources, source_state


def test_the_token_holds_until_a_files_content_changes(tmp_path):
    sequence, scene = tmp_path / "seq", tmp_path / "scene"
    files = []
    for name in ("images/4/000011.jpg", "seg/img_seg_mask/4/all/000011.png", "smpl/000011.npz"):
        path = sequence / name
        path.parent.mkdir(parents=True)
        path.write_bytes(name.encode())
        files.append(path)
    scene.mkdir()
    assert source_state(scene, sequence) == NEW  # not materialized yet
    record_sources(scene, sequence, files, NEW)
    assert (scene / SOURCES_FILE).is_file()
    assert source_state(scene, sequence) == NEW  # as recorded: the param Snakemake stored
    image = files[0]
    image.write_bytes(b"fixed")
    changed = source_state(scene, sequence)
    assert changed.startswith("changed ") and "images/4/000011.jpg" in changed
    record_sources(scene, sequence, files, changed)  # the rerun records its token
    assert source_state(scene, sequence) == changed
    os.utime(image, ns=(1, 1))  # a new time, the same bytes: no change
    assert source_state(scene, sequence) == changed
    files[2].unlink()
    assert source_state(scene, sequence) not in (changed, NEW)
