"""A labelled strip of views per model, one row per model: the picture of equal-budget runs.

    python tools/sample_strips.py --out docs/tuning/candidates-1400.jpg \
        "old tiny (paper constants), diversity 1=runs/long-div1/checkpoints/ckpt-00001400.safetensors" \
        "old tiny, diversity 0=runs/long-div0/checkpoints/ckpt-00001400.safetensors" \
        "ADA auto, diversity 1=runs/ada-div1/checkpoints/ckpt-00001400.safetensors" \
        "ADA auto, diversity 0 (new tiny)=runs/ada-div0/checkpoints/ckpt-00001400.safetensors"

Each row: seeds 1, 2, 3 (--seeds), a 2F x F view (394 x 197 for the presets) centred on the horizon
at x = 0, of the model's G_ema (a checkpoint, a run folder or a model file).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

import infinitygan as ig
from infinitygan.io.images import to_uint8

LABEL_ROWS, GAP = 16, 4


def strip(model, seeds: list[int]) -> np.ndarray:
    """(F, len(seeds) x (2F + GAP) - GAP, 3) uint8: the seeds' views side by side."""
    F = model.config.training.full_size
    views = [to_uint8(model.generate(seed=s, width=2 * F, height=F)) for s in seeds]
    gap = np.full((F, GAP, 3), 255, np.uint8)
    return np.concatenate([p for v in views for p in (v, gap)][:-1], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="+", help="LABEL=MODEL")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = []
    for row in args.rows:
        label, _, path = row.rpartition("=")
        s = strip(ig.load_model(path), seeds)
        lab = Image.new("RGB", (s.shape[1], LABEL_ROWS), "white")
        ImageDraw.Draw(lab).text((2, 2), label, fill="black")
        parts += [np.asarray(lab), s]
    Image.fromarray(np.concatenate(parts, 0)).save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
