"""Hi4D sequences in their released folder layout."""

from hi4dfix.hi4d.layout import (
    HI4D_CAMERA_IDS,
    Hi4DLayout,
    SceneName,
    default_sequence_dir,
    identity_from_sequence_dir,
    normalise_sequence_dir,
    parse_scene_name,
)
from hi4dfix.hi4d.reader import (
    Hi4DCamera,
    Hi4DFormatError,
    Hi4DMeta,
    Hi4DSequence,
    Problem,
    ReadConfig,
    SmplFrame,
    read_sequence,
    validate_sequence,
)

__all__ = [
    "HI4D_CAMERA_IDS",
    "Hi4DCamera",
    "Hi4DFormatError",
    "Hi4DLayout",
    "Hi4DMeta",
    "Hi4DSequence",
    "Problem",
    "ReadConfig",
    "SceneName",
    "SmplFrame",
    "default_sequence_dir",
    "identity_from_sequence_dir",
    "normalise_sequence_dir",
    "parse_scene_name",
    "read_sequence",
    "validate_sequence",
]
