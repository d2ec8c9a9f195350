"""Image grids for the report: rows of same-size tiles with column titles, row titles and captions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np
from matplotlib.figure import Figure

from hi4dfix.report.plotting import new_figure

T = TypeVar("T")


@dataclass(frozen=True)
class Tile:
    image: np.ndarray  # (H, W, 3) float in [0, 1]
    caption: str = ""


def spread_pick(items: Sequence[T], count: int) -> list[T]:
    """``count`` items evenly spread over ``items`` (first and last included), in order; all if fewer."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if len(items) <= count:
        return list(items)
    indices = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in indices]


def image_grid(
    rows: Sequence[Sequence[Tile]],
    column_titles: Sequence[str],
    row_titles: Sequence[str],
    title: str,
    tile_height_in: float,
    dpi: int,
) -> Figure:
    """A figure of ``rows`` x ``column_titles`` tiles; small images are enlarged without smoothing."""
    if not rows:
        raise ValueError(f"{title}: no rows to show")
    if len(row_titles) != len(rows):
        raise ValueError(f"{title}: {len(rows)} rows but {len(row_titles)} row titles")
    for i, row in enumerate(rows):
        if len(row) != len(column_titles):
            raise ValueError(f"{title}: row {i} has {len(row)} tiles, expected {len(column_titles)}")
    height, width = rows[0][0].image.shape[:2]
    tile_width_in = tile_height_in * width / height
    # Room for the row titles on the left, the captions under each tile and the titles on top.
    figure = new_figure(0.9 + tile_width_in * len(column_titles), 0.8 + (tile_height_in + 0.35) * len(rows), dpi)
    axes = figure.subplots(len(rows), len(column_titles), squeeze=False)
    for r, (row, row_title) in enumerate(zip(rows, row_titles)):
        for c, tile in enumerate(row):
            ax = axes[r][c]
            image = np.clip(np.asarray(tile.image, dtype=np.float32), 0.0, 1.0)
            ax.imshow(image, interpolation="nearest" if image.shape[0] < 256 else "antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(column_titles[c], fontsize=10, fontweight="bold")
            if c == 0:
                ax.set_ylabel(row_title, fontsize=8.5)
            if tile.caption:
                ax.set_xlabel(tile.caption, fontsize=8)
    figure.suptitle(title, fontsize=11)
    return figure
