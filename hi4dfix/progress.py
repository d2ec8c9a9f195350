"""Progress bars for long steps: shown on a terminal, silent in non-interactive job logs."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    # disable=None: tqdm turns itself off when stderr is not a terminal (Snakemake logs, Slurm)
    return tqdm(items, desc=desc, total=total, disable=None, leave=False)
