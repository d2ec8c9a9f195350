"""The study report's items: the version card, metric and loss charts, and image galleries.

Each module turns pipeline outputs (or the study config) into one file for Snakemake's HTML report;
the workflow's report rules (workflow/rules/report.smk) are thin glue around them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

# Menu entries of the HTML report (its menu sorts them by name, hence the numbers).
CATEGORY_CARD = "1. Version card"
CATEGORY_METRICS = "2. Metrics"  # NVS on the reserved scenes and the internal DiFix evaluation
CATEGORY_VIEWS = "3. Before and after"
CATEGORY_GALLERY = "4. Triplet gallery"
CATEGORY_TRAINING = "5. DiFix training"

Settings = TypeVar("Settings")


def settings_from_dict(cls: type[Settings], values: Mapping[str, Any] | None, where: str) -> Settings:
    """A report settings dataclass from a config block; unknown keys name the block in the error."""
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(values or {}) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; known: {known}")
    # YAML gives lists where the dataclasses hold tuples (frozen, hashable settings).
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in (values or {}).items()})
