"""Matplotlib figures without pyplot: no global figure state, no interactive backend, atomic PNGs."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from hi4dfix.io import atomic_path

# Snakemake's HTML report shows an image in a box as high as the window, centred, and cuts what sticks
# out above it (snakemake issue 3906): PNGs stay within a laptop browser's content area.
MAX_SIZE_PX = (1200, 800)


def new_figure(width_in: float, height_in: float, dpi: int) -> Figure:
    """A figure drawn by the Agg canvas that ``savefig`` picks for PNG (the headless one)."""
    return Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")


def fitting_dpi(figure: Figure, dpi: float, max_size_px: tuple[int, int] = MAX_SIZE_PX) -> float:
    """``dpi``, lowered where needed so that the figure fits ``max_size_px`` (width, height)."""
    width_in, height_in = figure.get_size_inches()
    return min(dpi, max_size_px[0] / width_in, max_size_px[1] / height_in)


def save_png(figure: Figure, path: str | os.PathLike, dpi: float, max_size_px: tuple[int, int] = MAX_SIZE_PX) -> None:
    """Write ``figure`` as PNG (within ``max_size_px``), atomically; no software stamp, so reruns give equal bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=fitting_dpi(figure, dpi, max_size_px), metadata={"Software": None})
