import math

import numpy as np
import pandas as pd
import pytest

from hi4dfix import arms as A
from hi4dfix import tables as T
from hi4dfix.metrics import METRIC_COLUMNS, higher_is_better
from hi4dfix.stats import BootstrapConfig, scene_estimate


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
                # the metrics after the first six move with the offset in their good direction, as the others
                **{m: 0.5 + (1 if higher_is_better(m) else -1) * offset / 100 for m in METRIC_COLUMNS[6:]},
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
    assert list(df.columns) == ["frame", "cam", *METRIC_COLUMNS, "lpips_computed"]
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


def long_views(arms: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """Per-scene tables of each arm as the long per-view table (the mean rows left out)."""
    parts = []
    for arm, tables in arms.items():
        for scene, table in tables.items():
            rows = table[table["frame"].astype(str) != T.MEAN].copy()
            rows[["frame", "cam"]] = rows[["frame", "cam"]].astype(np.int64)
            parts.append(rows.assign(arm=arm, scene=scene))
    return pd.concat(parts, ignore_index=True)


def three_arms(raw, base, tuned, lpips=True):
    return {"raw": scene_tables(raw, lpips), "base": scene_tables(base, lpips), "tuned": scene_tables(tuned, lpips)}


def row(table, scene, metric, comparison):
    hit = table[(table.scene == scene) & (table.metric == metric) & (table.comparison == comparison)]
    assert len(hit) == 1
    return hit.iloc[0]


# Whole-frame endpoint, no equivalence margin: the tests below count 3 metrics and read plain verdicts.
CFG = BootstrapConfig(n_resamples=500, primary="psnr", secondary=("ssim", "lpips"), min_effect=0.0)


def test_delta_table_layout_arm_means_and_paired_deltas():
    arms = three_arms(
        raw={"pair19": -1.0, "pair32": -2.0}, base={"pair19": 0.0, "pair32": 0.0}, tuned={"pair19": 1.0, "pair32": -0.5}
    )
    df = T.delta_table(long_views(arms), bootstrap=CFG)
    assert list(df.columns) == list(T.DELTA_COLUMNS) == [
        "scene", "metric", "comparison", "raw", "base", "tuned", "delta", "ci_low", "ci_high",
        "n_frames", "n_views", "verdict", "note", "unit", "test", "p_value", "p_holm",
    ]  # fmt: skip
    assert len(df) == 3 * 3 * 3  # CFG's 3 endpoint metrics x (2 scenes + mean) x comparisons
    assert list(df["scene"][:9]) == ["pair19"] * 3 + ["pair32"] * 3 + ["mean"] * 3
    assert list(df["comparison"][:3]) == ["tuned_vs_base", "tuned_vs_raw", "base_vs_raw"]
    for scene in ("pair19", "pair32"):
        for metric in ("psnr", "ssim", "lpips"):
            for (b, a), name in zip(A.COMPARISONS, T.COMPARISON_NAMES):
                r = row(df, scene, metric, name)
                for arm in A.ARMS:
                    assert r[arm] == pytest.approx(T.scene_mean(arms[arm][scene])[metric])  # the CSVs' mean rows
                assert r["delta"] == pytest.approx(r[b] - r[a])
                assert r["ci_low"] <= r["delta"] <= r["ci_high"]
                assert (r["n_frames"], r["n_views"]) == (2, 4)
    mean = row(df, "mean", "psnr", "tuned_vs_base")
    scenes = df[(df.scene != "mean") & (df.metric == "psnr") & (df.comparison == "tuned_vs_base")]
    assert mean["delta"] == pytest.approx(scenes["delta"].mean())  # mean of the scenes' deltas
    for arm in A.ARMS:
        assert mean[arm] == pytest.approx(scenes[arm].mean())
    assert (mean["n_frames"], mean["n_views"]) == (4, 8)


def test_verdicts_follow_tests_and_direction():
    # tuned is better than base everywhere by a constant margin (PSNR/SSIM up, LPIPS down), raw worse; the
    # frames differ by that margin exactly, so within a scene the sign-flip fallback on 2 frames gives p = 0.5:
    # 2 frames per scene cannot say improved. Noisy frames with a large shift can.
    rng = np.random.default_rng(3)
    views = noisy_views(rng, scenes=[f"s{i}" for i in range(7)], n_frames=8)
    for metric in METRIC_COLUMNS:
        views.loc[views.arm == "tuned", metric] += 1.0  # far above the frame noise
        views.loc[views.arm == "raw", metric] -= 1.0
    views["lpips"] = 2.0 - views["lpips"]  # LPIPS: the tuned arm lowest
    df = T.delta_table(views, bootstrap=CFG)
    for scene in ("s0", "s6", "mean"):
        for metric in ("psnr", "ssim", "lpips"):
            # base and raw do not train here; one run of the tuned arm is one draw of its training seed
            assert row(df, scene, metric, "base_vs_raw")["verdict"] == "improved", (scene, metric)
            for name in ("tuned_vs_base", "tuned_vs_raw"):
                assert row(df, scene, metric, name)["verdict"] == "too few seeds", (scene, metric, name)
                assert T.TOO_FEW_SEEDS_NOTE in row(df, scene, metric, name)["note"]
    assert row(df, "mean", "psnr", "tuned_vs_base")["p_value"] == pytest.approx(2 / 2**7)
    # three training seeds whose spread is small against the effect: the seed level lets the verdicts through
    seeded = T.delta_table(_with_seeds(views, {0: -0.01, 1: 0.0, 2: 0.01}), bootstrap=CFG)
    for scene in ("s0", "s6", "mean"):
        for metric in ("psnr", "ssim", "lpips"):
            for name in T.COMPARISON_NAMES:
                assert row(seeded, scene, metric, name)["verdict"] == "improved", (scene, metric, name)
    mean = row(seeded, "mean", "psnr", "tuned_vs_base")
    assert mean["test"] == "sign-flip and t over scenes x seeds" and mean["p_value"] >= 2 / 2**7
    lpips = row(df, "s0", "lpips", "tuned_vs_base")
    assert lpips["delta"] < 0 and lpips["ci_high"] < 0  # LPIPS down: improved
    flipped = views.copy()
    flipped.loc[flipped.arm == "tuned", ["psnr", "ssim"]] -= 3.0
    worse = T.delta_table(_with_seeds(flipped, {0: -0.01, 1: 0.0, 2: 0.01}), metrics=("psnr", "ssim"), bootstrap=CFG)
    assert set(worse.loc[worse.comparison == "tuned_vs_base", "verdict"]) == {"worse"}


def test_identical_arms_give_zero_intervals():
    arms = three_arms({"a": 0.0, "b": 0.5}, {"a": 0.0, "b": 0.5}, {"a": 0.0, "b": 0.5})
    df = T.delta_table(long_views(arms), bootstrap=CFG)
    assert (df["delta"] == 0).all() and (df["ci_low"] == 0).all() and (df["ci_high"] == 0).all()
    untrained = df.comparison == "base_vs_raw"
    assert set(df.loc[(df.scene != "mean") & untrained, "verdict"]) == {"inconclusive"}
    assert set(df.loc[(df.scene != "mean") & ~untrained, "verdict"]) == {"too few seeds"}
    assert set(df.loc[df.scene == "mean", "verdict"]) == {"too few scenes"}
    assert (df["p_value"] == 1.0).all()
    frames_note = "2 frames: too few to measure their autocorrelation, taken as independent"
    scenes_note = (
        "2 scenes: the scene-level sign-flip test cannot reach alpha 0.05 after Holm over 3 comparisons; "
        "7 scenes would allow a verdict"
    )
    assert set(df.loc[untrained, "note"]) == {frames_note, scenes_note}
    assert set(df.loc[~untrained, "note"]) == {
        f"{T.TOO_FEW_SEEDS_NOTE}; {frames_note}",
        f"{scenes_note}; {T.TOO_FEW_SEEDS_NOTE}",
    }
    # With the default endpoint (person PSNR, min_effect 0.5) an interval of [0, 0] is equivalence; the mean
    # row still needs enough scenes.
    default = T.delta_table(long_views(arms))
    assert set(default["metric"]) == {
        "psnr", "ssim", "lpips", "flip", "haarpsi", "gmsd", "flicker", "flicker_flow",
        "psnr_person", "ssim_person", "lpips_person",
    }  # fmt: skip
    person = (default.metric == "psnr_person") & (default.scene != "mean")
    assert set(default.loc[person & (default.comparison == "base_vs_raw"), "verdict"]) == {"equivalent"}
    assert set(default.loc[person & (default.comparison != "base_vs_raw"), "verdict"]) == {"too few seeds"}


def test_intervals_come_from_frames_within_the_scene():
    # differences depend on the frame only: the table's interval is the stats module's within-scene one
    views = []
    for frame in range(6):
        for cam in (4, 16, 28):
            for arm, shift in (("raw", 0.0), ("base", 0.0), ("tuned", 0.1 * frame)):
                views.append(
                    {"arm": arm, "scene": "s", "frame": frame, "cam": cam, **{m: 0.5 + shift for m in METRIC_COLUMNS}}
                )
    df = T.delta_table(pd.DataFrame(views), metrics=("psnr",), bootstrap=CFG)
    r = row(df, "s", "psnr", "tuned_vs_base")
    frames = np.repeat(np.arange(6), 3)
    differences = np.repeat(0.1 * np.arange(6), 3)
    expected = scene_estimate(frames, differences, CFG, "s")
    assert (r["delta"], r["ci_low"], r["ci_high"]) == pytest.approx(
        (expected.delta, expected.ci_low, expected.ci_high), abs=1e-12
    )
    by_cam = scene_estimate(np.tile([4, 16, 28], 6), differences, CFG, "s")
    assert (r["ci_low"], r["ci_high"]) != pytest.approx((by_cam.ci_low, by_cam.ci_high))
    assert r["unit"] == "within s only" and r["test"] == "t on batch means"


def noisy_views(rng, scenes=("a", "b"), n_frames=8, cams=(4, 16, 28)):
    """Per-view metrics with frame effects and noise, arms raw < base < tuned on average."""
    rows = []
    for scene in scenes:
        for frame in range(n_frames):
            effect = rng.normal(0.0, 1.0)
            for cam in cams:
                for k, arm in enumerate(A.ARMS):
                    rows.append(
                        {
                            "arm": arm,
                            "scene": scene,
                            "frame": frame,
                            "cam": cam,
                            **{m: 0.5 + 0.1 * k + 0.1 * effect + rng.normal(0, 0.05) for m in METRIC_COLUMNS},
                        }
                    )
    return pd.DataFrame(rows)


def test_delta_table_is_deterministic_and_independent_of_row_order():
    views = noisy_views(np.random.default_rng(0))
    first = T.delta_table(views, bootstrap=CFG)
    assert (first["ci_high"] - first["ci_low"] > 0).all()
    shuffled = views.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(T.delta_table(shuffled, bootstrap=CFG), first)
    # t intervals need no random numbers; the sign flip is exact up to 16 scenes: the seed changes nothing here
    other = T.delta_table(views, bootstrap=BootstrapConfig(n_resamples=500, seed=1, primary="psnr", secondary=()))
    np.testing.assert_allclose(other["ci_low"], first.loc[first.metric.isin(["psnr"]), "ci_low"].iloc[: len(other)])


def test_nan_metrics_get_no_verdict_and_a_note():
    arms = three_arms({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, lpips=False)
    arms["tuned"]["a"] = T.per_scene_table(make_rows(1.0, lpips=True))  # only one arm of one scene has LPIPS
    df = T.delta_table(long_views(arms), bootstrap=CFG)
    lp = df[df.metric == "lpips"]
    assert lp["delta"].isna().all() and lp["ci_low"].isna().all() and (lp["verdict"] == "").all()
    assert (lp["n_views"] == 0).all()
    assert (
        row(df, "a", "lpips", "tuned_vs_base")["note"]
        == "lpips not computed for raw and base (LPIPS AlexNet weights not cached)"
    )
    assert (
        row(df, "b", "lpips", "base_vs_raw")["note"]
        == "lpips not computed for raw, base and tuned (LPIPS AlexNet weights not cached)"
    )
    assert "not computed" in row(df, "mean", "lpips", "tuned_vs_raw")["note"]
    ps = df[df.metric == "psnr"]
    assert not ps["note"].str.contains("not computed").any() and (ps["verdict"] != "").all()


def test_mean_row_over_measured_scenes_only():
    arms = three_arms({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, {"a": 2.0, "b": 0.0})
    arms["tuned"]["b"].loc[:, "psnr"] = math.nan
    df = T.delta_table(long_views(arms), metrics=("psnr",), bootstrap=CFG)
    mean = row(df, "mean", "psnr", "tuned_vs_base")
    assert mean["delta"] == pytest.approx(row(df, "a", "psnr", "tuned_vs_base")["delta"])
    assert "mean over 1 of 2 scenes" in mean["note"] and "one scene" in mean["note"]
    assert "mean over" not in row(df, "mean", "psnr", "base_vs_raw")["note"]  # both scenes measured there
    assert mean["tuned"] == pytest.approx(T.scene_mean(arms["tuned"]["a"])["psnr"])


def test_single_frame_scene_is_inconclusive_with_a_note():
    rows = [r for r in make_rows() if r["frame"] == 5]
    arms = {arm: {"s": T.per_scene_table([{**r, "psnr": r["psnr"] + k} for r in rows])} for k, arm in enumerate(A.ARMS)}
    df = T.delta_table(long_views(arms), metrics=("psnr",), bootstrap=CFG)
    r = row(df, "s", "psnr", "tuned_vs_base")
    assert r["delta"] == pytest.approx(1.0) and math.isnan(r["ci_low"]) and r["n_frames"] == 1
    assert r["verdict"] == "too few frames" and "one frame" in r["note"]
    mean = row(df, "mean", "psnr", "tuned_vs_base")
    assert mean["verdict"] == "too few scenes" and "one scene: within-scene evidence only" in mean["note"]


def test_delta_table_errors():
    arms = three_arms({"a": 0.0}, {"a": 0.0}, {"a": 1.0})
    views = long_views(arms)
    with pytest.raises(ValueError, match="unknown metric"):
        T.delta_table(views, metrics=("fid",))
    with pytest.raises(ValueError, match=r"arms \['base', 'tuned'\], expected"):
        T.delta_table(views[views.arm != "raw"])
    with pytest.raises(ValueError, match="cover different views"):
        T.delta_table(views.drop(index=views.index[(views.arm == "tuned")][:1]))
    with pytest.raises(ValueError, match="views repeat"):
        T.delta_table(pd.concat([views, views.iloc[:1]]))
    with pytest.raises(ValueError, match=r"my.csv: per-view metrics lack columns \['frame'\]"):
        T.delta_table(views.drop(columns=["frame"]), source="my.csv")


def test_delta_table_from_nvs_csvs_and_csv_roundtrip(tmp_path):
    arms = three_arms({"a": -1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 0.5}, lpips=False)
    scenes = ["b", "a"]  # config order; the table sorts
    csvs = {arm: [tmp_path / arm / f"{scene}.csv" for scene in scenes] for arm in A.ARMS}
    for arm in A.ARMS:
        for scene, path in zip(scenes, csvs[arm]):
            T.write_csv(path, arms[arm][scene])
    df = T.delta_table_from_csvs(scenes, csvs, bootstrap=CFG)
    pd.testing.assert_frame_equal(df, T.delta_table(long_views(arms), bootstrap=CFG))
    T.write_csv(tmp_path / "deltas.csv", df)
    back = T.read_delta_csv(tmp_path / "deltas.csv")
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-12)
    assert (back.loc[back.metric == "lpips", "verdict"] == "").all()
    with pytest.raises(ValueError, match="no per-scene CSVs for arms"):
        T.delta_table_from_csvs(scenes, {"raw": csvs["raw"], "base": csvs["base"]})
    (tmp_path / "old.csv").write_text("scene,metric,baseline,tuned,delta,improved,note\n")
    with pytest.raises(ValueError, match=r"old.csv: delta table lacks columns"):
        T.read_delta_csv(tmp_path / "old.csv")


def test_internal_evaluation_table_from_eval_csv(tmp_path):
    rows = []
    for arm, shift in (("raw", 0.0), ("base", 0.5), ("tuned", 1.0)):
        for frame in (0, 1, 2):
            for cam in (4, 16):
                # the columns of evaluate_difix's rows: arm, id, frame, cam, metrics, lpips_computed
                rows.append(
                    {
                        "arm": arm,
                        "id": f"hi4d_pair02_dance/{cam}/{frame}",
                        "frame": frame,
                        "cam": cam,
                        "psnr": 20 + shift + frame,
                        "ssim": 0.5,
                        "lpips": math.nan,
                        "psnr_person": math.nan,
                        "ssim_person": math.nan,
                        "lpips_person": math.nan,
                        **dict.fromkeys(METRIC_COLUMNS[6:], math.nan),
                        "lpips_computed": False,
                    }
                )
    pd.DataFrame(rows).to_csv(tmp_path / "eval.csv", index=False)
    views = T.read_eval_views(tmp_path / "eval.csv")
    assert list(views.columns[:4]) == ["arm", "scene", "frame", "cam"]
    assert views.loc[0, ["scene", "frame", "cam"]].tolist() == ["hi4d_pair02_dance", 0, 4]
    assert views["lpips_computed"].dtype == bool
    df = T.delta_table(views, bootstrap=CFG)
    scene = row(df, "hi4d_pair02_dance", "psnr", "tuned_vs_base")
    mean = row(df, "mean", "psnr", "tuned_vs_base")
    # a constant 0.5 over 3 frames: within the scene the exact sign flip on 3 frames floors at p = 0.25
    assert scene["delta"] == pytest.approx(0.5) and scene["verdict"] == "too few seeds" and scene["n_frames"] == 3
    # one scene: the mean row is the scene's evidence, and decides nothing about scenes
    assert (
        mean[["delta", "ci_low", "ci_high", "n_frames", "n_views", "unit"]].tolist()
        == scene[["delta", "ci_low", "ci_high", "n_frames", "n_views", "unit"]].tolist()
    )
    assert mean["unit"] == "within hi4d_pair02_dance only" and mean["verdict"] == "too few scenes"
    assert "one scene: within-scene evidence only, no claim about unseen scenes" in mean["note"]
    assert row(df, "mean", "ssim", "tuned_vs_raw")["verdict"] == "too few scenes"
    assert list(views.columns) == ["arm", "scene", "frame", "cam", *METRIC_COLUMNS, "lpips_computed"]
    pd.DataFrame([{**rows[0], "id": "pair02/4"}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: id 'pair02/4' is not of the form scene/cam/frame"):
        T.read_eval_views(tmp_path / "bad.csv")
    pd.DataFrame([{**rows[0], "frame": 7}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: row 'hi4d_pair02_dance/4/0' has a frame that differs from its id"):
        T.read_eval_views(tmp_path / "bad.csv")


def test_versions_table_holds_every_versions_mean_rows():
    scenes = [f"s{i}" for i in range(7)]  # 7 scenes: the sign flip can reach 0.05 after Holm over 3
    base = dict.fromkeys(scenes, 0.0)
    up = {scene: 1.0 + 0.1 * i for i, scene in enumerate(scenes)}
    down = {scene: -value for scene, value in up.items()}
    deltas = {
        "v1": T.delta_table(long_views(three_arms(base, base, up)), bootstrap=CFG),
        "v2": T.delta_table(long_views(three_arms(base, base, down)), bootstrap=CFG),
    }
    vt = T.versions_table(deltas, parents={"v2": "v1"})
    assert list(vt.columns) == ["version", "parent", "n_scenes", *[c for c in T.DELTA_COLUMNS if c != "scene"]]
    assert len(vt) == 2 * 3 * 3  # versions x metrics x comparisons
    assert set(vt["n_scenes"]) == {7}
    assert set(vt.loc[vt.version == "v1", "parent"]) == {""} and set(vt.loc[vt.version == "v2", "parent"]) == {"v1"}
    for version, table in deltas.items():
        mine = vt[vt.version == version].drop(columns=["version", "parent", "n_scenes"]).reset_index(drop=True)
        means = table[table.scene == "mean"].drop(columns=["scene"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, means)
    study = vt[(vt.comparison == "tuned_vs_base") & (vt.metric == "psnr")].set_index("version")
    assert study.loc["v1", "delta"] > 0 > study.loc["v2", "delta"]
    assert set(study["verdict"]) == {"too few seeds"}  # one run of each tuned arm


def test_delta_markdown_shows_intervals_verdicts_notes_and_how():
    arms = three_arms({"a": -1.0}, {"a": 0.0}, {"a": 1.0}, lpips=False)
    cfg = BootstrapConfig(n_resamples=300, confidence=0.9, seed=3)
    df = T.delta_table(long_views(arms), bootstrap=cfg)
    md = T.delta_markdown(df, cfg, title="v0: novel views")
    assert md.startswith("## v0: novel views\n")
    assert "90% intervals; across scenes (mean rows): t interval on the scene means" in md
    assert "**PSNR (dB) ↑**" in md and "**SSIM ↑**" in md and "**PSNR (dB) (people) ↑**" in md
    header = (
        "| scene | interval | frames | views | raw | base | tuned | tuned − base [90%] | tuned vs base "
        "| tuned − raw [90%] | tuned vs raw | base − raw [90%] | base vs raw |"
    )
    # the default endpoint's 11 metrics; LPIPS and person LPIPS, computed for no arm, are one line each saying why
    assert md.count(header) == 11 - 2
    assert "| a | within a only | 2 | 4 |" in md and "| mean | within a only | 2 | 4 |" in md
    r = row(df, "a", "psnr", "tuned_vs_base")
    # a constant difference over 2 frames: a point interval, and the sign-flip fallback's p = 0.5
    assert f"| {r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | inconclusive |" in md
    s = row(df, "mean", "ssim", "base_vs_raw")
    assert f"{s['delta']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}] | too few scenes |" in md
    assert (
        "**LPIPS ↓**: no scene has it: lpips not computed for raw, base and tuned (LPIPS AlexNet weights not cached)."
        in md
    )


def test_to_markdown_formats():
    df = pd.DataFrame(
        {"scene": ["a", "b|c"], "x": [1.23456, math.nan], "ok": [True, False], "verdict": ["improved", ""]}
    )
    md = T.to_markdown(df, digits=3)
    lines = md.strip().split("\n")
    assert lines[0] == "| scene | x | ok | verdict |"
    assert lines[1] == "| --- | ---: | --- | --- |"
    assert lines[2] == "| a | 1.235 | yes | improved |"
    assert lines[3] == "| b\\|c | n/a | no | n/a |"


def test_rows_resting_on_few_frames_or_scenes_say_so():
    many = T.delta_table(
        noisy_views(np.random.default_rng(1), scenes=[f"s{i:02d}" for i in range(10)], n_frames=10),
        metrics=("psnr",),
        bootstrap=CFG,
    )
    untrained = many.comparison == "base_vs_raw"
    assert (many.loc[untrained, "note"] == "").all() and (many.loc[~untrained, "note"] == T.TOO_FEW_SEEDS_NOTE).all()
    few = T.delta_table(
        noisy_views(np.random.default_rng(1), scenes=["a", "b", "c"], n_frames=9), metrics=("psnr",), bootstrap=CFG
    )
    few = few[few.comparison == "base_vs_raw"]
    assert set(few.loc[few.scene != "mean", "note"]) == {
        "9 frames: too few to measure their autocorrelation, taken as independent"
    }
    assert set(few.loc[few.scene == "mean", "note"]) == {
        "3 scenes: the scene-level sign-flip test cannot reach alpha 0.05 after Holm over 3 comparisons; "
        "7 scenes would allow a verdict"
    }


# ---- the control arm -------------------------------------------------------------------------------


def four_arms(raw, base, control, tuned, lpips=True):
    return {**three_arms(raw, base, tuned, lpips), "control": scene_tables(control, lpips)}


def test_control_arm_adds_its_column_and_two_comparisons_with_intervals_and_verdicts():
    arms = four_arms(
        raw={"a": -1.0, "b": -1.0}, base={"a": 0.0, "b": 0.0}, control={"a": 0.5, "b": 0.25}, tuned={"a": 2.0, "b": 1.0}
    )
    df = T.delta_table(long_views(arms), bootstrap=CFG)
    assert list(df.columns) == list(T.delta_columns(A.CONTROL_ARMS)) == [
        "scene", "metric", "comparison", "raw", "base", "tuned", "control", "delta", "ci_low", "ci_high",
        "n_frames", "n_views", "verdict", "note", "unit", "test", "p_value", "p_holm",
    ]  # fmt: skip
    assert len(df) == 3 * 3 * 5  # CFG's 3 endpoint metrics x (2 scenes + mean) x five comparisons
    assert list(df["comparison"][:5]) == [
        "tuned_vs_base", "tuned_vs_raw", "base_vs_raw", "tuned_vs_control", "control_vs_base",
    ]  # fmt: skip
    for scene in ("a", "b"):
        for metric in ("psnr", "ssim", "lpips"):
            for b, a in A.arm_comparisons(A.CONTROL_ARMS):
                r = row(df, scene, metric, T.comparison_name(b, a))
                assert r["control"] == pytest.approx(T.scene_mean(arms["control"][scene])[metric])
                assert r["delta"] == pytest.approx(r[b] - r[a])
                assert r["ci_low"] <= r["delta"] <= r["ci_high"]
    # tuned beats control and control beats base on every view, but 2 frames of a constant difference floor the
    # within-scene sign flip at p = 0.5, and 2 scenes are too few: the verdicts do not claim more
    for metric in ("psnr", "ssim", "lpips"):
        for name in ("tuned_vs_control", "control_vs_base"):
            assert row(df, "a", metric, name)["verdict"] == "too few seeds"  # both compare a trained arm
            assert row(df, "mean", metric, name)["verdict"] == "too few scenes"
    assert row(df, "mean", "psnr", "tuned_vs_control")["delta"] == pytest.approx((1.5 + 0.75) / 2)
    assert row(df, "mean", "psnr", "control_vs_base")["delta"] == pytest.approx((0.5 + 0.25) / 2)
    # a control worse than the base on 8 scenes (Holm over 5 needs 8) is called so, not hidden
    scenes = [f"s{i}" for i in range(8)]
    zero = dict.fromkeys(scenes, 0.0)
    lower = {scene: -0.5 - 0.1 * i for i, scene in enumerate(scenes)}
    views = long_views(four_arms(zero, zero, lower, dict.fromkeys(scenes, 1.0)))
    assert row(T.delta_table(views, bootstrap=CFG), "mean", "psnr", "control_vs_base")["verdict"] == "too few seeds"
    worse = T.delta_table(_with_seeds(views, {0: -0.01, 1: 0.0, 2: 0.01}), bootstrap=CFG)
    assert row(worse, "mean", "psnr", "control_vs_base")["verdict"] == "worse"
    assert row(worse, "mean", "psnr", "control_vs_base")["p_holm"] >= 5 * 2 / 2**8


def test_without_control_the_tables_have_no_control_column_or_rows():
    df = T.delta_table(long_views(three_arms({"a": -1.0}, {"a": 0.0}, {"a": 1.0})), bootstrap=CFG)
    assert "control" not in df.columns and not df["comparison"].str.contains("control").any()
    md = T.delta_markdown(df, CFG)
    assert "control" not in md


def test_control_arm_errors():
    arms = four_arms({"a": -1.0}, {"a": 0.0}, {"a": 0.5}, {"a": 1.0})
    views = long_views(arms)
    with pytest.raises(ValueError, match=r"arms \['base', 'control', 'raw'\], expected"):
        T.delta_table(views[views.arm != "tuned"], bootstrap=CFG)
    short = views[~((views.arm == "control") & (views.frame == 5) & (views.cam == 4))]
    with pytest.raises(ValueError, match="arms raw and control cover different views"):
        T.delta_table(short, bootstrap=CFG)
    with pytest.raises(ValueError, match=r"no per-scene CSVs for arms \['base', 'tuned'\]"):
        T.nvs_views(["a"], {"raw": [], "extra": []})


def test_control_arm_from_nvs_csvs_markdown_and_csv_roundtrip(tmp_path):
    scenes = ["s1", "s2"]
    offsets = {"raw": -1.0, "base": 0.0, "control": 0.3, "tuned": 1.0}
    csvs = {arm: [tmp_path / arm / f"{scene}.csv" for scene in scenes] for arm in A.CONTROL_ARMS}
    for arm in A.CONTROL_ARMS:
        for path in csvs[arm]:
            T.write_csv(path, T.per_scene_table(make_rows(offsets[arm])))
    df = T.delta_table_from_csvs(scenes, csvs, bootstrap=CFG)
    assert set(df["comparison"]) == set(T.COMPARISON_NAMES + T.CONTROL_COMPARISON_NAMES)
    T.write_csv(tmp_path / "deltas.csv", df)
    back = T.read_delta_csv(tmp_path / "deltas.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    md = T.delta_markdown(df, CFG)
    assert (
        "| raw | base | tuned | control | tuned − base [95%] | tuned vs base | tuned − raw [95%] | tuned vs raw "
        "| base − raw [95%] | base vs raw | tuned − control [95%] | tuned vs control "
        "| control − base [95%] | control vs base |"
    ) in md
    r = row(df, "mean", "psnr", "tuned_vs_control")
    assert f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | {r['verdict']} |" in md
    # a table claiming control comparisons without the control column is refused
    df.drop(columns=["control"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: comparisons \['control_vs_base', 'tuned_vs_control'\]"):
        T.read_delta_csv(tmp_path / "bad.csv")


def test_versions_table_with_and_without_the_control_arm():
    base = {"a": 0.0, "b": 0.0}
    deltas = {
        "v0": T.delta_table(long_views(four_arms(base, base, base, {"a": 1.0, "b": 1.0})), bootstrap=CFG),
        "v1": T.delta_table(long_views(three_arms(base, base, {"a": 1.0, "b": 1.0})), bootstrap=CFG),
    }
    vt = T.versions_table(deltas)
    assert "control" in vt.columns
    assert len(vt) == 3 * (5 + 3)  # CFG's 3 endpoint metrics x comparisons
    assert vt.loc[vt.version == "v1", "control"].isna().all()
    assert set(vt.loc[vt.version == "v1", "comparison"]) == set(T.COMPARISON_NAMES)
    assert vt.loc[vt.version == "v0", "control"].notna().all()


def test_interval_cells_show_the_interval_width():
    # Issue #39: 1.5052 to 1.5135 printed to 0.01 read +1.51 [+1.51, +1.51].
    assert T.interval_cell(1.5094, 1.5052, 1.5135, 2) == "+1.5094 [+1.5052, +1.5135]"
    assert T.interval_cell(1.5, 1.2, 1.8, 2) == "+1.50 [+1.20, +1.80]"  # wide enough at the metric's digits
    assert T.interval_cell(0.1, 0.1, 0.1, 2) == "+0.10 [+0.10, +0.10]"  # a point stays at the metric's digits
    assert T.interval_cell(0.3, math.nan, math.nan, 2) == "+0.30 [n/a]"
    assert T.interval_cell(math.nan, math.nan, math.nan, 2) == "n/a"
    assert T.interval_digits(0.0, 1e-9, 4) == T.MAX_DIGITS
    row = pd.Series({"delta": 1.5094, "ci_low": 1.5052, "ci_high": 1.5135})
    assert T._delta_cell(row, 2) == "+1.5094 [+1.5052, +1.5135]"


def test_extra_arms_add_their_columns_and_two_comparisons_each_with_intervals_and_verdicts(tmp_path):
    """difix.extra_arms: each extra arm is a column after tuned (and control) and two comparisons, tuned − ARM
    and ARM − raw, tested in the same Holm family as the others; the CSV, markdown and versions table keep them."""
    scenes = [f"s{i}" for i in range(9)]  # Holm over 7 comparisons needs 9 scenes for a verdict
    offsets = {"raw": -1.0, "base": 0.0, "tuned": 1.0, "fixer": 0.5, "difix1": -0.5}
    csvs = {arm: [tmp_path / arm / f"{scene}.csv" for scene in scenes] for arm in offsets}
    for arm, paths in csvs.items():
        for k, path in enumerate(paths):
            T.write_csv(path, T.per_scene_table(make_rows(offsets[arm] + 0.01 * k * (arm == "tuned"))))
    df = T.delta_table_from_csvs(scenes, csvs, bootstrap=CFG)
    assert list(df.columns[3:8]) == ["raw", "base", "tuned", "fixer", "difix1"]
    expected = [*T.COMPARISON_NAMES, "tuned_vs_fixer", "fixer_vs_raw", "tuned_vs_difix1", "difix1_vs_raw"]
    assert list(dict.fromkeys(df["comparison"])) == expected
    r = row(df, "mean", "psnr", "fixer_vs_raw")
    assert r["delta"] == pytest.approx(1.5) and r["verdict"] == "improved"
    assert r["p_holm"] == pytest.approx(7 * 2 / 2**9)  # Holm over the 7 comparisons of the row
    tuned = row(df, "mean", "psnr", "tuned_vs_fixer")  # the tuned arm: one training seed
    assert tuned["delta"] == pytest.approx(0.5 + 0.01 * 4) and tuned["verdict"] == "too few seeds"
    assert row(df, "mean", "psnr", "difix1_vs_raw")["delta"] == pytest.approx(0.5)
    T.write_csv(tmp_path / "deltas.csv", df)
    back = T.read_delta_csv(tmp_path / "deltas.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert T.table_arms(back) == ("raw", "base", "tuned", "fixer", "difix1")
    md = T.delta_markdown(df, CFG)
    assert "| tuned − fixer [95%] | tuned vs fixer | fixer − raw [95%] | fixer vs raw |" in md
    plain = T.delta_table(long_views(three_arms({"a": 0.0}, {"a": 0.0}, {"a": 1.0})), bootstrap=CFG)
    vt = T.versions_table({"v0": back, "v1": plain})
    assert {"fixer", "difix1"} <= set(vt.columns) and vt.loc[vt.version == "v1", "fixer"].isna().all()
    assert set(vt.loc[vt.version == "v0", "comparison"]) == set(expected)
    # a table claiming an extra arm's comparisons without its column is refused
    df.drop(columns=["fixer"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"comparisons \['fixer_vs_raw', 'tuned_vs_fixer'\] do not belong"):
        T.read_delta_csv(tmp_path / "bad.csv")


def test_extra_arm_comparisons_are_listed_after_the_studys():
    assert A.arm_comparisons(("raw", "base", "tuned", "fixer")) == (
        *A.COMPARISONS, ("tuned", "fixer"), ("fixer", "raw"),
    )  # fmt: skip
    assert A.arm_comparisons(A.CONTROL_ARMS) == A.COMPARISONS + A.CONTROL_COMPARISONS
    assert A.study_arms(True, ["fixer"]) == ("raw", "base", "tuned", "control", "fixer")


def _with_seeds(views: pd.DataFrame, shifts: dict[int, float]) -> pd.DataFrame:
    """``views`` with the trained arms (tuned, control) repeated per seed, each seed's metrics shifted by its value."""
    trained = views["arm"].isin(T.TRAINED_ARMS)
    parts = [views[~trained].assign(seed=math.nan)]
    for seed, shift in shifts.items():
        runs = views[trained].copy()
        runs[list(METRIC_COLUMNS)] += shift
        parts.append(runs.assign(seed=float(seed)))
    return pd.concat(parts, ignore_index=True)


def test_several_seeds_average_within_scenes_and_report_their_spread():
    views = noisy_views(np.random.default_rng(3), scenes=("a", "b", "c"))
    plain = T.delta_table(views, bootstrap=CFG)
    assert "seeds" not in plain.columns  # one seed: the table as it was
    # two seeds shifted by -/+0.1: the seed-averaged scene means are the one seed's, the spread is theirs
    seeded = T.delta_table(_with_seeds(views, {0: -0.1, 5: 0.1}), bootstrap=CFG)
    assert list(seeded.columns[-2:]) == list(T.SEED_COLUMNS)
    tuned = seeded["comparison"].isin(["tuned_vs_base", "tuned_vs_raw"])
    np.testing.assert_allclose(seeded["delta"], plain["delta"], atol=1e-12)
    assert (seeded.loc[tuned, "seeds"] == 2).all() and (seeded.loc[~tuned, "seeds"] == 1).all()
    np.testing.assert_allclose(seeded.loc[tuned, "seed_sd"], 0.2 / math.sqrt(2), atol=1e-12)
    assert seeded.loc[~tuned, "seed_sd"].isna().all()
    # the mean row's test takes scenes and seeds as units: never more certain than the scenes alone
    mean = row(seeded, T.MEAN, "psnr", "tuned_vs_base")
    assert (
        mean["unit"] == "across 3 scenes x 2 training seeds"
        and mean["n_views"] == 2 * row(plain, T.MEAN, "psnr", "tuned_vs_base")["n_views"]
    )
    assert mean["p_value"] >= row(plain, T.MEAN, "psnr", "tuned_vs_base")["p_value"]
    assert row(seeded, T.MEAN, "psnr", "base_vs_raw")["unit"] == "across 3 scenes"  # neither arm trains
    assert "2 seeds, SD" in T.delta_markdown(seeded, CFG)


def test_seed_csvs_read_with_their_seed(tmp_path):
    paths = {}
    for arm, offset in (("raw", 0.0), ("base", 1.0), ("tuned", 2.0), ("tuned7", 2.5)):
        path = tmp_path / f"{arm}.csv"
        T.write_csv(path, T.per_scene_table(make_rows(offset)))
        paths[arm] = [str(path)]
    arm_csvs = {arm: paths[arm] for arm in ("raw", "base", "tuned")}
    views = T.nvs_views(["s"], arm_csvs, {"tuned": {7: paths["tuned7"]}}, first_seed=0)
    assert sorted(views.loc[views.arm == "tuned", "seed"].unique()) == [0.0, 7.0]
    assert views.loc[views.arm == "raw", "seed"].isna().all()
    with pytest.raises(ValueError, match="does not train"):
        T.nvs_views(["s"], arm_csvs, {"base": {7: paths["tuned7"]}})


def test_internal_evaluation_of_several_seeds(tmp_path):
    paths = {}
    for seed, tuned_shift in ((0, 1.0), (4, 2.0)):
        rows = [
            {"arm": arm, "id": f"hi4d_pair02_dance/{cam}/{frame}", "frame": frame, "cam": cam,
             "psnr": 20 + shift + frame, "ssim": 0.5, "lpips": 0.3, "psnr_person": math.nan, "ssim_person": math.nan,
             "lpips_person": math.nan, **dict.fromkeys(METRIC_COLUMNS[6:], math.nan), "lpips_computed": True}
            for arm, shift in (("raw", 0.0), ("base", 0.5), ("tuned", tuned_shift))
            for frame in (0, 1, 2) for cam in (4, 16)
        ]  # fmt: skip
        paths[seed] = tmp_path / f"eval{seed}.csv"
        pd.DataFrame(rows).to_csv(paths[seed], index=False)
    views = T.read_seeded_eval_views(paths)
    assert len(views) == 4 * 6 and views.loc[views.arm == "base", "seed"].isna().all()  # raw, base once
    df = T.delta_table(views, bootstrap=CFG)
    tuned = row(df, "mean", "psnr", "tuned_vs_base")
    assert tuned["delta"] == pytest.approx(1.0) and tuned["seeds"] == 2  # (0.5 + 1.5) / 2
    assert tuned["seed_sd"] == pytest.approx(1.0 / math.sqrt(2))
    assert row(df, "mean", "psnr", "base_vs_raw")["seeds"] == 1
    pd.testing.assert_frame_equal(T.read_seeded_eval_views({0: paths[0]}), T.read_eval_views(paths[0]))
