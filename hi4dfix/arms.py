"""The study's arms and the comparisons between them (the vocabulary of the delta tables and the workflow)."""

from __future__ import annotations

from typing import Sequence

ARMS = ("raw", "base", "tuned")  # every study's arms: no DiFix, base DiFix, tuned DiFix
# The base trained as long as `tuned`, with its settings, on fresh out-of-domain data (difix.control).
CONTROL = "control"
CONTROL_ARMS = (*ARMS, CONTROL)
COMPARISONS = (("tuned", "base"), ("tuned", "raw"), ("base", "raw"))  # (b, a): delta = b - a
# With the control arm: in-domain data against more steps, and what more steps alone do.
CONTROL_COMPARISONS = (("tuned", CONTROL), (CONTROL, "base"))


def study_arms(control: bool) -> tuple[str, ...]:
    """The arms of a study: raw, base and tuned, and the control arm when it is on."""
    return CONTROL_ARMS if control else ARMS


def arm_comparisons(arms: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The (b, a) comparisons of a set of arms: the three of every study, then the control arm's two."""
    return COMPARISONS + (CONTROL_COMPARISONS if CONTROL in arms else ())
