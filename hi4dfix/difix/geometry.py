"""How the config sizes DiFix's images, from the config alone: torch-free, so the workflow imports it
at DAG build without loading torch (seconds of every `snakemake` call). hi4dfix.difix.data resizes."""

from __future__ import annotations

from typing import Any, Mapping

# Default long side of the processing size per preset: tiny runs at the embedded default's
# native frame size (160 px, no downscale); sd-turbo at SD-Turbo's native 512 px (Difix itself
# trains on frames squashed to 576x1024, config/README.md "Departures").
PRESET_LONG_SIDE = {"tiny": 160, "sd-turbo": 512}


def training_geometry(difix: Mapping[str, Any], tuning: Mapping[str, Any]) -> dict[str, Any]:
    """``model_input_size``'s ``long_side`` / ``resolution`` for a tuning run, from the config's
    ``difix`` block and a version's ``tuning`` block: ``difix.long_side`` (null: the preset's,
    ``PRESET_LONG_SIDE``), with the version's ``tuning.resolution`` as a fixed-size override."""
    long_side = difix.get("long_side")
    if long_side is None:
        long_side = PRESET_LONG_SIDE[difix.get("preset", "tiny")]
    return {"long_side": int(long_side), "resolution": tuning.get("resolution")}


def inference_geometry(difix: Mapping[str, Any], tuning: Mapping[str, Any]) -> dict[str, Any]:
    """The same for the DiFix arms at evaluation: the tuning run's, unless ``difix.eval_long_side``
    is ``native`` (each image's own size snapped to 16) or a long side of its own."""
    override = difix.get("eval_long_side")
    if override is None:
        return training_geometry(difix, tuning)
    if override == "native":
        return {"long_side": None, "resolution": None}
    return {"long_side": int(override), "resolution": None}
