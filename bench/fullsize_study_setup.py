"""Set up a full-size run of the study for a GPU machine without internet (issue 16, deliverable 2).

    python bench/fullsize_study_setup.py OUT [--frames 20] [--steps 300]

Writes into OUT:

* ``sd_turbo_base/``: a DiFix base in the ``nvidia/difix_ref`` folder layout with the sd-turbo
  architecture and random weights (the real ones cannot be downloaded there). Its
  ``hi4dfix_config.json`` names the folder itself as ``base_model_id``, so the tuned pkls (which
  hold the UNet and the VAE's LoRA and skip weights only) are rebuilt on it, offline;
* ``config.yaml``: the embedded default study with synthetic Hi4D-layout sequences at 940x1280,
  ``--frames`` frames a scene, gsplat renders, the sd-turbo preset from that folder, tuning for
  ``--steps`` compiled bf16 steps at 512 px (L2 only: no VGG16 here), every arm.

Then, from the repository root (``snakemake`` and its dependencies installed or carried):

    snakemake --cores 16 --resources gpu=1 --configfile OUT/config.yaml \\
        results/v0/deltas.csv results/v0/difix/eval.csv

and read the per-rule wall time, peak RSS (``max_rss``) and the GPU memory the logs print from
``results/benchmarks/{rule}/...tsv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_base(folder: Path) -> Path:
    import torch

    from hi4dfix.difix.checkpoint import save_pretrained_dir
    from hi4dfix.difix.config import DifixConfig
    from hi4dfix.difix.model import build_random_difix

    torch.manual_seed(0)
    model = build_random_difix(DifixConfig(preset="sd-turbo", base_model_id=str(folder.resolve())))
    return save_pretrained_dir(model, folder)


def study_config(base: Path, frames: int, steps: int) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["data"]["synthetic"].update(num_frames=frames, width=940, height=1280)
    config["materialize"].update(max_frames=None)
    config["render_profiles"]["imperfect"].update(backend="gsplat", fit_steps=300, num_gaussians=13780)
    config["difix"].update(base=str(base.resolve()), preset="sd-turbo")
    config["versions"]["v0"]["tuning"].update(
        steps=steps, lr=2e-5, mixed_precision="bf16", compile=True, resolution=None,
        lambda_lpips=0.0, lambda_gram=0.0, ckpt_every=max(1, steps // 3), val_every=max(1, steps // 3),
    )  # fmt: skip
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = write_base(args.out / "sd_turbo_base")
    (args.out / "config.yaml").write_text(yaml.safe_dump(study_config(base, args.frames, args.steps), sort_keys=False))
    print(f"wrote {base} and {args.out / 'config.yaml'}")


if __name__ == "__main__":
    main()
