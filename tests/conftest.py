"""Shared fixtures: one tiny synthetic Hi4D-layout sequence and its materialized scene.

Both are session-scoped and shared by many tests: treat them as read-only (copy before
modifying).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hi4dfix.hi4d import read_sequence
from hi4dfix.materialize import MaterializeConfig, materialize_scene
from hi4dfix.scene import MaterializedScene
from hi4dfix.synth import SynthConfig, generate_sequence

FIXTURE_SCENE = "hi4d_pair00_dance"
# Tiny on purpose: 8 cameras x 3 frames at 60x80 renders in a fraction of a second.
FIXTURE_SYNTH_CONFIG = SynthConfig(seed=0, num_frames=3, width=60, height=80)


@pytest.fixture(scope="session")
def synthetic_sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a synthetic sequence in Hi4D's released layout (``.../pair00/dance00``)."""
    root = tmp_path_factory.mktemp("hi4d") / "pair00" / "dance00"
    return generate_sequence(root, FIXTURE_SCENE, FIXTURE_SYNTH_CONFIG)


@pytest.fixture(scope="session")
def materialized_scene(synthetic_sequence: Path, tmp_path_factory: pytest.TempPathFactory) -> MaterializedScene:
    """The fixture sequence materialized at its source size (60x80, all 3 frames)."""
    out = tmp_path_factory.mktemp("scenes") / FIXTURE_SCENE
    return materialize_scene(read_sequence(synthetic_sequence), out, FIXTURE_SCENE, MaterializeConfig())


@pytest.fixture(scope="session")
def rendered_scene(materialized_scene: MaterializedScene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Render folder of the fixture scene from estimated poses (a short fit: renders are degraded)."""
    from hi4dfix.render import RenderConfig, render_scene

    out = tmp_path_factory.mktemp("renders") / FIXTURE_SCENE
    render_scene(materialized_scene, out, RenderConfig(fit_steps=10, num_gaussians=400, device="cpu"))
    return out


@pytest.fixture(scope="session")
def small_pipeline(tmp_path_factory: pytest.TempPathFactory):
    """The whole DAG of the delta table (report items included) on the small config, run once for every
    test that reads it.

    Returns (workdir, config). Tests may run dry runs or further targets there, but must not change
    what this run produced.
    """
    from workflow_helpers import run_snakemake, small_config

    workdir = tmp_path_factory.mktemp("pipeline")
    config = small_config()
    run_snakemake(workdir, config, "--cores", "2", "results/v0/deltas.csv", "results/v0/difix/eval.csv")
    return workdir, config
