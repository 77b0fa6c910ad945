"""Which colour modes a model covers: the sky and ground colours of the evaluation's 1x views
against the real images' (issue 16: what SWD's coarsest level, 16 px, measures).

    python benchmarks/colour_modes.py [--models M ...] [--weights g_ema|g] [--num 128]

The views are the fixed protocol's (`infinitygan eval --scale 1`: F x F regions at the training
windows' vertical placements, brought to the reference size), the reals its real set. Per image:
the mean colour of the top 16 rows ("sky") and of the bottom 16 ("ground"); printed per set, one
JSON line each: the sky luminance's mean and standard deviation, the share of night skies
(luminance < 0.25) and of warm skies (red > blue, sunsets), the ground colour's mean and
spread, and the per-channel standard deviation of all pixels.

Where a model's sky colour comes from (--canvases K, default 16; 0 skips it): K strips of
16 x 197 by 197 pixels (the views' height, horizon-centred), one canvas (one zg) each, cut into
16 blocks of 197 x 197; the sky luminance (top quarter) of every block. Printed: its standard
deviation within a canvas (over the blocks, mean over canvases: what the local latents zl
change) and between canvases (of the canvases' means: what zg changes), and the share of
canvases holding both a night block (< 0.25) and a day block (> 0.45). In the data the palette
is one per image (the procedural renderer draws it per scene). And where the within-canvas
changes come from: the correlation of the sky luminance (16-pixel column blocks) over one
period of the horizontal coordinate with that over the next period (the strips are made two
periods wide; zl differs between the periods, the coordinates repeat): near 1, the colour
follows the periodic horizontal coordinate; near 0, the local latents.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def stats(x: torch.Tensor) -> dict:
    """uint8 (N, 3, S, S) -> the colour figures of the module docstring."""
    a = x.double().numpy() / 255.0
    top, bottom = a[:, :, :16].mean((2, 3)), a[:, :, -16:].mean((2, 3))
    lum = top.mean(1)
    r = lambda v: np.round(v, 3).tolist()  # noqa: E731
    return {"sky_luminance_mean": r(lum.mean()), "sky_luminance_sd": r(lum.std()),
            "night_share": r((lum < 0.25).mean()), "warm_share": r((top[:, 0] > top[:, 2]).mean()),
            "ground_rgb_mean": r(bottom.mean(0)), "ground_rgb_sd": r(bottom.std(0)), "pixel_sd": r(a.std((0, 2, 3)))}


def sky_along_canvases(model, canvases: int, seed: int, blocks: int = 16) -> dict:
    """The within- and between-canvas sky figures of the module docstring."""
    g = model.config.generator
    full = model.config.training.full_size
    period = g.coords.period * 2 ** g.n_up if g.coords.system in ("scenery", "texture") else 0
    width = max(blocks * full, 2 * period)
    sky, corr = [], []
    for k in range(canvases):
        x0 = model.region(blocks * full, full).x                              # the blocks centred on x = 0
        img = model.generate(seed * 100003 + k, width, full, x=x0)            # (full, width, 3) in [-1, 1]
        lum = ((np.asarray(img, dtype=np.float64)[: full // 4] + 1) / 2).mean((0, 2))   # (width,)
        sky.append(lum[: blocks * full].reshape(blocks, full).mean(1))
        if period:
            cols = lum[: 2 * period].reshape(-1, 16).mean(1)
            half = len(cols) // 2
            corr.append(np.corrcoef(cols[:half], cols[half:])[0, 1])
    sky = np.array(sky)                                                       # (canvases, blocks)
    r = lambda v: round(float(v), 3)  # noqa: E731
    return {"within_canvas_sky_sd": r(sky.std(1).mean()), "between_canvas_sky_sd": r(sky.mean(1).std()),
            "night_and_day_share": r(np.mean([(b < 0.25).any() and (b > 0.45).any() for b in sky])),
            "period_correlation": r(np.nanmean(corr)) if corr else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=[None], help="model files / checkpoints (default: the bundled model)")
    ap.add_argument("--weights", choices=("g_ema", "g"), default="g_ema", help="g: a checkpoint's raw G")
    ap.add_argument("--num", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--canvases", type=int, default=16, help="canvases for the within/between-canvas sky figures")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    from stripes import load

    from infinitygan.metrics import evaluate as E
    from infinitygan.metrics import protocol as P

    for i, path in enumerate(args.models):
        model = load(path, args.weights)
        if i == 0:
            data = E._open_data("procedural", model.config, P.EvalProtocol.of(model.config))
            size = P.default_reference_size(model.config)
            reals = torch.cat(list(P.real_batches(data, P.real_indices(len(data), args.num, args.seed), size=size)))
            print(json.dumps({"set": "real", **stats(reals)}))
        views = P.placements(model.config, args.num, 1, args.seed)
        fakes = torch.cat([b["paper"] for b in P.fake_batches(model, views, "cpu")])
        print(json.dumps({"set": str(path or "bundled"), "weights": args.weights, **stats(fakes)}))
        if args.canvases > 0:
            print(json.dumps({"set": str(path or "bundled"), "weights": args.weights,
                              **sky_along_canvases(model, args.canvases, args.seed)}))


if __name__ == "__main__":
    main()
