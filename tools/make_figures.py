"""Figures of docs/: real vs generated patches and a 4096-pixel panorama of a model.

    python tools/make_figures.py [--model MODEL] [--out docs]

Real patches are random 101x101 crops of procedural landscapes (the bundled model's training
data); generated patches are 101x101 regions of random seeds at random horizontal positions,
centred on the horizon band the model was trained on.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import infinitygan as ig
from infinitygan.io.images import to_uint8
from infinitygan.data.datasets import open_dataset
from infinitygan.data.patches import random_patch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--pano-width", type=int, default=4096)
    ap.add_argument("--pano-height", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    out = Path(args.out)
    model = ig.load_model(args.model)
    P = model.config.generator.patch_size
    ds = open_dataset("procedural", full_size=model.config.training.full_size, pre_resize=None, seed=0)
    g = torch.Generator().manual_seed(0)
    real = [random_patch(ds[i], P, g)[0].permute(1, 2, 0).numpy() for i in range(args.n)]
    synth = model.synthesizer("cpu")
    rng = np.random.default_rng(0)
    fake = []
    for i in range(args.n):
        y = int(rng.integers(-P, 1))
        fake.append(synth.render(model.canvas(100 + i), ig.Region(int(rng.integers(-5000, 5000)), y, P, P)))
    pad = 4
    grid = np.full((2 * P + 3 * pad, args.n * (P + pad) + pad, 3), 255, np.uint8)
    for i, (r, f) in enumerate(zip(real, fake)):
        x = pad + i * (P + pad)
        grid[pad: pad + P, x: x + P] = to_uint8(r)
        grid[2 * pad + P: 2 * pad + 2 * P, x: x + P] = to_uint8(f)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out / "real_vs_generated.png")
    pano = model.generate(args.seed, args.pano_width, args.pano_height, progress=True)
    Image.fromarray(to_uint8(pano)).save(out / "pano.jpg", quality=90)
    print(f"wrote {out / 'real_vs_generated.png'} (top: real, bottom: generated) and {out / 'pano.jpg'}")


if __name__ == "__main__":
    main()
