"""The raw renders' quality (hi4dfix.render.quality): per scene, and as columns of the delta table."""

import math

import numpy as np
import pandas as pd
import pytest

from hi4dfix.io import read_image
from hi4dfix.metrics import psnr
from hi4dfix.render.quality import (
    QUALITY_COLUMNS,
    quality_markdown,
    read_render_quality,
    render_quality,
    with_render_quality,
)
from hi4dfix.render.scene_renders import read_render_manifest, target_image_path
from hi4dfix.tables import MEAN, write_csv


def test_render_quality_splits_the_source_and_the_heldout_cameras(rendered_scene):
    row = render_quality(rendered_scene, "gaussian")
    manifest = read_render_manifest(rendered_scene)
    sources = [item for item in manifest["images"] if item["is_source"]]
    heldout = [item for item in manifest["images"] if not item["is_source"]]
    assert (row["n_train_views"], row["n_heldout_views"]) == (len(sources), len(heldout)) and sources and heldout
    expected = np.mean(
        [
            psnr(
                read_image(rendered_scene / i["path"]),
                read_image(target_image_path(rendered_scene, i["cam"], i["frame"])),
            )
            for i in heldout
        ]
    )
    assert row["render_psnr_heldout"] == pytest.approx(expected)
    # the fit sees its source cameras: better there than at the cameras it never saw
    assert row["render_psnr_train"] > row["render_psnr_heldout"]
    assert 0 < row["render_ssim_heldout"] <= 1 and 0 < row["render_ssim_train"] <= 1


def test_delta_rows_gain_their_scenes_quality_and_the_mean_row_the_mean(tmp_path):
    paths = []
    for i, scene in enumerate(["a", "b"]):
        path = tmp_path / f"{scene}.quality.csv"
        values = dict(zip(QUALITY_COLUMNS, [20.0 + i, 0.8, 15.0 + 2 * i, 0.6 + 0.1 * i]))
        write_csv(path, pd.DataFrame([{"scene": scene, **values}]))
        paths.append(path)
    quality = read_render_quality(paths)
    table = pd.DataFrame({"scene": ["a", "b", MEAN, "a"], "delta": [1.0, 2.0, 1.5, 0.5]})
    out = with_render_quality(table, quality, MEAN)
    assert list(out["delta"]) == [1.0, 2.0, 1.5, 0.5]  # every other number stays
    assert list(out["render_psnr_heldout"]) == [15.0, 17.0, 16.0, 15.0]
    assert out["render_ssim_heldout"].iloc[2] == pytest.approx(0.65)
    assert "| mean | 20.50 | 0.8000 | 16.00 | 0.6500 |" in quality_markdown(quality, ["a", "b"])
    with pytest.raises(ValueError, match=r"render quality missing for scenes \['c'\]"):
        with_render_quality(pd.DataFrame({"scene": ["c"]}), quality, MEAN)
    (tmp_path / "bad.csv").write_text("scene,render_psnr_train\nx,1\n")
    with pytest.raises(ValueError, match="bad.csv: a render quality file"):
        read_render_quality([tmp_path / "bad.csv"])
    assert not math.isnan(out["render_psnr_train"].iloc[0])
