"""Synthetic two-person sequences in Hi4D's layout (the embedded default scene and the test fixture)."""

from hi4dfix.synth.generate import HI4D_IMAGE_SIZE, SynthConfig, generate_sequence

__all__ = ["HI4D_IMAGE_SIZE", "SynthConfig", "generate_sequence"]
