"""The study's arms and the comparisons between them (the vocabulary of the delta tables and the workflow).

Besides raw, base, tuned and control, a config may add *extra arms* (``difix.extra_arms``,
:mod:`hi4dfix.extra_arms`): released fixers run inference only, each compared as ``tuned − ARM`` (does the
tuned DiFix beat what is already released?) and ``ARM − raw`` (what that fixer does to a render at all).
"""

from __future__ import annotations

from typing import Sequence

ARMS = ("raw", "base", "tuned")  # every study's arms: no DiFix, base DiFix, tuned DiFix
# The base trained as long as `tuned`, with its settings, on fresh out-of-domain data (difix.control).
CONTROL = "control"
CONTROL_ARMS = (*ARMS, CONTROL)
COMPARISONS = (("tuned", "base"), ("tuned", "raw"), ("base", "raw"))  # (b, a): delta = b - a
# With the control arm: in-domain data against more steps, and what more steps alone do.
CONTROL_COMPARISONS = (("tuned", CONTROL), (CONTROL, "base"))
RESERVED_ARM_NAMES = (*CONTROL_ARMS, "mean")  # no extra arm may take these names (mean: the delta tables' row)


def extra_comparisons(arm: str) -> tuple[tuple[str, str], ...]:
    """An extra arm's two comparisons: the tuned DiFix against it, and it against the raw render."""
    return (("tuned", arm), (arm, "raw"))


def study_arms(control: bool, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The arms of a study: raw, base and tuned, the control arm when it is on, then the extra arms in order."""
    return (*(CONTROL_ARMS if control else ARMS), *extra)


def extra_arms_of(arms: Sequence[str]) -> tuple[str, ...]:
    """The extra arms among ``arms`` (those that are neither raw, base, tuned nor control), in order."""
    return tuple(arm for arm in arms if arm not in CONTROL_ARMS)


def extra_arm_title(arm: str) -> str:
    """How charts and figures name an extra arm (legends, column titles)."""
    return f"extra arm {arm}"


def arm_comparisons(arms: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The (b, a) comparisons of a set of arms: the three of every study, the control arm's two, then
    ``tuned − ARM`` and ``ARM − raw`` for every extra arm."""
    extra = tuple(pair for arm in extra_arms_of(arms) for pair in extra_comparisons(arm))
    return COMPARISONS + (CONTROL_COMPARISONS if CONTROL in arms else ()) + extra
