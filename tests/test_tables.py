import math

import numpy as np
import pandas as pd
import pytest

from hi4dfix import tables as T
from hi4dfix.metrics import METRIC_COLUMNS


def make_rows(offset=0.0, lpips=True, person_nan_at=None):
    rows = []
    for frame in (10, 5):  # unsorted on purpose
        for cam in (16, 4):
            row = {
                "frame": frame,
                "cam": cam,
                "psnr": 20.0 + offset + frame / 10 + cam / 100,
                "ssim": 0.8 + offset / 100,
                "lpips": 0.2 - offset / 100 if lpips else math.nan,
                "psnr_person": 18.0 + offset,
                "ssim_person": 0.7,
                "lpips_person": 0.3 if lpips else math.nan,
                "lpips_computed": lpips,
            }
            if person_nan_at == (frame, cam):
                row.update(psnr_person=math.nan, ssim_person=math.nan, lpips_person=math.nan)
            rows.append(row)
    return rows


def test_per_scene_table_shape_order_and_mean():
    rows = make_rows(person_nan_at=(5, 4))
    df = T.per_scene_table(rows)
    assert len(df) == 5
    assert list(df.columns[:8]) == ["frame", "cam", *METRIC_COLUMNS]
    assert list(zip(df["frame"][:4], df["cam"][:4])) == [(5, 4), (5, 16), (10, 4), (10, 16)]
    mean = T.scene_mean(df)
    assert mean["frame"] == "mean" and mean["cam"] == "mean"
    assert mean["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
    assert mean["psnr_person"] == pytest.approx(18.0)  # the NaN view is skipped
    assert mean["lpips_computed"] is True or mean["lpips_computed"] == True  # noqa: E712


def test_per_scene_table_all_nan_lpips_and_flag():
    df = T.per_scene_table(make_rows(lpips=False))
    mean = T.scene_mean(df)
    assert math.isnan(mean["lpips"]) and not mean["lpips_computed"]


def test_per_scene_table_rejects_bad_rows():
    rows = make_rows()
    with pytest.raises(ValueError, match="repeat"):
        T.per_scene_table(rows + [rows[0]])
    bad = dict(rows[0])
    del bad["ssim"]
    with pytest.raises(ValueError, match="ssim"):
        T.per_scene_table([bad])
    with pytest.raises(ValueError):
        T.per_scene_table([])


def test_per_scene_csv_roundtrip(tmp_path):
    df = T.per_scene_table(make_rows(lpips=False))
    path = tmp_path / "sub" / "scene.csv"
    T.write_csv(path, df)
    back = T.read_per_scene_csv(path)
    assert list(back["frame"]) == [5, 5, 10, 10, "mean"]
    assert list(back["cam"]) == [4, 16, 4, 16, "mean"]
    pd.testing.assert_frame_equal(back[list(METRIC_COLUMNS)], df[list(METRIC_COLUMNS)])
    assert list(back["lpips_computed"]) == [False] * 5
    assert not list(tmp_path.joinpath("sub").glob(".*tmp*"))  # no temporary left behind
    (tmp_path / "broken.csv").write_text("frame,cam,psnr\n1,4,20\n")
    with pytest.raises(ValueError, match="broken.csv"):
        T.read_per_scene_csv(tmp_path / "broken.csv")


def scene_tables(offsets, lpips=True):
    return {name: T.per_scene_table(make_rows(off, lpips=lpips)) for name, off in offsets.items()}


def test_delta_table_values_and_direction():
    baseline = scene_tables({"pair19": 0.0, "pair32": 0.0})
    tuned = scene_tables({"pair19": 1.0, "pair32": -1.0})
    df = T.delta_table(baseline, tuned)
    assert list(df.columns) == ["scene", "metric", "baseline", "tuned", "delta", "improved", "note"]
    assert len(df) == 3 * 3  # (2 scenes + mean) x 3 metrics
    scenes = df[df["scene"] != "mean"]
    np.testing.assert_allclose(scenes["delta"], scenes["tuned"] - scenes["baseline"])
    got = {(r.scene, r.metric): r.improved for r in df.itertuples()}
    # pair19 better everywhere: PSNR/SSIM up, LPIPS down
    assert got[("pair19", "psnr")] and got[("pair19", "ssim")] and got[("pair19", "lpips")]
    assert not got[("pair32", "psnr")] and not got[("pair32", "ssim")] and not got[("pair32", "lpips")]
    mean_psnr = df[(df.scene == "mean") & (df.metric == "psnr")].iloc[0]
    base_means = [T.scene_mean(baseline[s])["psnr"] for s in ("pair19", "pair32")]
    tuned_means = [T.scene_mean(tuned[s])["psnr"] for s in ("pair19", "pair32")]
    assert mean_psnr["baseline"] == pytest.approx(np.mean(base_means))
    assert mean_psnr["tuned"] == pytest.approx(np.mean(tuned_means))
    assert mean_psnr["delta"] == pytest.approx(0.0, abs=1e-9)
    assert list(df["scene"]) == ["pair19", "pair32", "mean"] * 3


def test_delta_table_lower_is_better_for_lpips():
    baseline = scene_tables({"s": 0.0})
    tuned = scene_tables({"s": 0.0})
    tuned["s"].loc[:, "lpips"] = 0.5  # worse LPIPS, everything else equal
    df = T.delta_table(baseline, tuned)
    row = df[(df.scene == "s") & (df.metric == "lpips")].iloc[0]
    assert row["delta"] > 0 and row["improved"] == False  # noqa: E712
    psnr_row = df[(df.scene == "s") & (df.metric == "psnr")].iloc[0]
    assert psnr_row["delta"] == 0 and psnr_row["improved"] == False  # noqa: E712  # no change is no improvement


def test_delta_table_nan_handling_and_note():
    baseline = scene_tables({"a": 0.0, "b": 0.0}, lpips=False)
    tuned = scene_tables({"a": 1.0, "b": 1.0}, lpips=False)
    tuned["a"] = T.per_scene_table(make_rows(1.0, lpips=True))  # only one arm of one scene has LPIPS
    df = T.delta_table(baseline, tuned)
    lp = df[df.metric == "lpips"].set_index("scene")
    assert lp["delta"].isna().all()
    assert lp["improved"].isna().all()
    assert "baseline" in lp.loc["a", "note"] and "tuned" not in lp.loc["a", "note"]
    assert "not cached" in lp.loc["b", "note"]
    assert "not computed" in lp.loc["mean", "note"]
    ps = df[df.metric == "psnr"]
    assert (ps["note"] == "").all() and ps["improved"].notna().all()


def test_delta_table_mean_over_paired_scenes_only():
    baseline = scene_tables({"a": 0.0, "b": 0.0})
    tuned = scene_tables({"a": 2.0, "b": 0.0})
    tuned["b"].loc[:, "psnr"] = math.nan
    df = T.delta_table(baseline, tuned, metrics=("psnr",))
    mean = df[df.scene == "mean"].iloc[0]
    a = df[df.scene == "a"].iloc[0]
    assert mean["delta"] == pytest.approx(a["delta"])
    assert "1 of 2" in mean["note"]


def test_delta_table_raw_column_and_errors():
    baseline = scene_tables({"a": 0.0})
    tuned = scene_tables({"a": 1.0})
    raw = scene_tables({"a": -3.0})
    df = T.delta_table(baseline, tuned, raw=raw)
    assert list(df.columns) == ["scene", "metric", "raw", "baseline", "tuned", "delta", "improved", "note"]
    assert df.loc[(df.scene == "a") & (df.metric == "psnr"), "raw"].iloc[0] == pytest.approx(T.scene_mean(raw["a"])["psnr"])
    with pytest.raises(ValueError, match="different scenes"):
        T.delta_table(baseline, scene_tables({"b": 0.0}))
    with pytest.raises(ValueError, match="unknown metric"):
        T.delta_table(baseline, tuned, metrics=("fid",))


def test_delta_csv_roundtrip(tmp_path):
    baseline = scene_tables({"a": 0.0}, lpips=False)
    tuned = scene_tables({"a": 1.0}, lpips=False)
    df = T.delta_table(baseline, tuned)
    T.write_csv(tmp_path / "delta.csv", df)
    back = T.read_delta_csv(tmp_path / "delta.csv")
    assert str(back["improved"].dtype) == "boolean"
    pd.testing.assert_series_equal(back["improved"], df["improved"])
    np.testing.assert_allclose(back["delta"], df["delta"])
    assert list(back["note"]) == list(df["note"])


def test_versions_table_side_by_side():
    baseline = scene_tables({"a": 0.0, "b": 0.0})
    deltas = {
        "v1": T.delta_table(baseline, scene_tables({"a": 1.0, "b": 1.0})),
        "v2": T.delta_table(baseline, scene_tables({"a": -1.0, "b": -1.0})),
    }
    vt = T.versions_table(deltas)
    assert list(vt["version"]) == ["v1", "v2"]
    assert list(vt["n_scenes"]) == [2, 2]
    assert "psnr_delta" in vt.columns and "lpips_improved" in vt.columns
    for version, table in deltas.items():
        mean = table[(table.scene == "mean") & (table.metric == "ssim")].iloc[0]
        assert vt.set_index("version").loc[version, "ssim_delta"] == pytest.approx(mean["delta"])
    assert bool(vt.loc[0, "psnr_improved"]) and not bool(vt.loc[1, "psnr_improved"])


def test_to_markdown_formats():
    baseline = scene_tables({"a": 0.0}, lpips=False)
    df = T.delta_table(baseline, scene_tables({"a": 1.0}, lpips=False))
    md = T.to_markdown(df, digits=3)
    lines = md.strip().split("\n")
    assert lines[0] == "| scene | metric | baseline | tuned | delta | improved | note |"
    assert lines[1].startswith("| --- | --- | ---: |")
    assert len(lines) == 2 + len(df)
    assert all(line.count("|") == 8 for line in lines)
    assert "| yes |" in md and "n/a" in md
    psnr_a = df[(df.scene == "a") & (df.metric == "psnr")].iloc[0]
    assert f"{psnr_a['baseline']:.3f}" in lines[2]
    assert T.to_markdown(pd.DataFrame({"x": ["a|b"]})).split("\n")[2] == "| a\\|b |"
