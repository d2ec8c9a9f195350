"""DiFix (Difix3D, CVPR 2025): model, checkpoints, inference and fine-tuning."""
