"""The version card: a study version's objective, splits, decisions, expected outputs and settings.

Made from the study config (a self-contained HTML page, no scripts), so it states what the
version set out to do, independent of what its results turned out to be; its last section is the
provenance record of those results (code, config hash, packages, weights, data, predictions).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from hi4dfix.io import write_text
from hi4dfix.provenance import summary_rows
from hi4dfix.study import Version

SPLITS = (
    ("difix_train", "DiFix fine-tuning (train triplets)"),
    ("difix_eval", "DiFix internal evaluation (test triplets; a pair not used for training)"),
    ("nvs_eval", "novel-view synthesis measurement (reserved scenes; never DiFix samples)"),
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem 2rem; color: #1f2933;
       background: #ffffff; line-height: 1.45; max-width: 60rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.1rem; margin-top: 1.4rem; border-bottom: 1px solid #d9dee3; padding-bottom: 0.2rem; }
.subtitle { color: #52606d; margin-top: 0; }
.objective { font-size: 1.05rem; background: #f0f4f8; border-left: 4px solid #f58518; padding: 0.6rem 0.9rem; }
table { border-collapse: collapse; margin: 0.4rem 0; }
th, td { text-align: left; vertical-align: top; padding: 0.25rem 0.8rem 0.25rem 0; border-bottom: 1px solid #eef1f4; }
th { color: #52606d; font-weight: 600; }
code { background: #f0f4f8; padding: 0 0.25rem; border-radius: 3px; font-size: 0.92em; }
.scene { display: inline-block; margin: 0 0.3rem 0.2rem 0; }
.reserved { color: #c62828; }
"""


def _code(value: Any) -> str:
    return f"<code>{html.escape(str(value))}</code>"


def _format_value(value: Any) -> str:
    if value is None:
        return "<em>default</em>"
    if isinstance(value, (list, tuple)):
        return ", ".join(_code(v) for v in value) if value else "<em>none</em>"
    return _code(value)


def flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as ``(dotted.key, value)`` pairs, in their order."""
    pairs: list[tuple[str, Any]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            pairs.extend(flatten(value, f"{name}."))
        else:
            pairs.append((name, value))
    return pairs


def _settings_table(settings: Mapping[str, Any]) -> str:
    if not settings:
        return "<p><em>defaults</em></p>"
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_format_value(v)}</td></tr>" for k, v in flatten(settings))
    return f"<table>{rows}</table>"


def _scene_list(scenes: Iterable[str], reserved: frozenset[str]) -> str:
    return " ".join(
        f'<span class="scene{" reserved" if scene in reserved else ""}">{_code(scene)}</span>' for scene in scenes
    )


def _eval_profile_note(version: Version) -> str:
    """Which renders DiFix is evaluated on, when they are not the training renders' profile."""
    if version.eval_profile == version.render_profile:
        return ""
    return (
        f"<p>The profile above renders the training scenes. The evaluation renders (difix_eval test triplets "
        f"and the reserved scenes' NVS arms) use profile {_code(version.eval_profile)}: the inference "
        "condition, the same inputs as the parent's.</p>"
    )


def effective_batch_text(model: str | os.PathLike, work_root: str | os.PathLike) -> str:
    """The tuning's effective batch (processes x per-process batch) from the run that made ``model``
    (its ``run.json`` under ``work_root``), in words for the card."""
    from hi4dfix.difix.runs import effective_batch, run_of_model

    run = run_of_model(model, work_root)
    numbers = None if run is None else effective_batch(run.record)
    if numbers is None:
        return f"unknown: no run folder under {work_root} holds {model}"
    total, processes, batch = numbers
    return f"{total} samples a step ({processes} process{'es' if processes != 1 else ''} x batch_size {batch})"


def version_card_html(
    version: Version,
    reserved_scenes: Iterable[str],
    render_profile: Mapping[str, Any],
    difix: Mapping[str, Any] | None = None,
    provenance: tuple[str, Mapping[str, Any]] | None = None,
) -> str:
    """The card of ``version`` as a standalone HTML page.

    ``render_profile`` is the profile the version names (its settings); ``difix`` the study-wide
    DiFix settings worth stating (e.g. ``base``, ``preset``); ``provenance`` (path, record) what
    made its numbers (:mod:`hi4dfix.provenance`).
    """
    reserved = frozenset(reserved_scenes)
    split_rows = "".join(
        f"<tr><th>{_code(key)}</th><td>{html.escape(role)}</td>"
        f"<td>{_scene_list(getattr(version, key), reserved)}</td></tr>"
        for key, role in SPLITS
    )
    decisions = "".join(f"<li>{html.escape(d)}</li>" for d in version.decisions) or "<li><em>none recorded</em></li>"
    outputs = "".join(f"<li>{_code(o)}</li>" for o in version.expected_outputs) or "<li><em>none listed</em></li>"
    sections = [
        f"<h1>Study version {html.escape(version.name)}</h1>",
        '<p class="subtitle">Does fine-tuning DiFix on in-domain Hi4D human scenes improve novel-view synthesis?</p>',
        "<h2>Objective</h2>",
        f'<p class="objective">{html.escape(version.objective)}</p>',
        "<h2>Splits</h2>",
        f"<table><tr><th>split</th><th>role</th><th>scenes</th></tr>{split_rows}</table>",
        f'<p>Reserved scenes (<span class="reserved">red</span>): {_scene_list(sorted(reserved), reserved)}. '
        "They are rendered and measured, never used as DiFix training or evaluation samples.</p>",
        "<h2>Decisions</h2>",
        f"<ol>{decisions}</ol>",
        "<h2>Expected outputs</h2>",
        f"<ul>{outputs}</ul>",
        "<h2>Settings</h2>",
        f"<h3>Render profile {_code(version.render_profile)}</h3>",
        _settings_table(render_profile),
        _eval_profile_note(version),
        "<h3>Triplets</h3>",
        _settings_table(version.triplets),
        "<h3>Tuning</h3>",
        _settings_table(version.tuning),
        "<h3>NVS evaluation</h3>",
        _settings_table(version.nvs),
    ]
    if difix:
        sections += ["<h3>DiFix</h3>", _settings_table(difix)]
    if provenance is not None:
        path, record = provenance
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_code(v)}</td></tr>" for k, v in summary_rows(record))
        sections += [
            "<h2>Provenance</h2>",
            f"<p>From {_code(path)}; <code>hi4dfix provenance check {html.escape(str(Path(path).parent))}</code> "
            "re-hashes the files it lists.</p>",
            f"<table>{rows}</table>",
        ]
    body = "\n".join(sections)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>hi4dfix {html.escape(version.name)}: version card</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_version_card(
    path: str | os.PathLike,
    version: Version,
    reserved_scenes: Iterable[str],
    render_profile: Mapping[str, Any],
    difix: Mapping[str, Any] | None = None,
    provenance: tuple[str, Mapping[str, Any]] | None = None,
) -> None:
    write_text(path, version_card_html(version, reserved_scenes, render_profile, difix, provenance))
