"""One palette per canvas? The sky of wide panoramas, as a user sees it (issue 30, section 2).

    python benchmarks/palette.py [--models M ...] [--weights g_ema|g] [--seeds 1-8] [--width 4096] [--height 128]

What a user renders: `infinitygan generate --seed S --width 4096 --height 128` (the default
placement, centred on the horizon) for each seed. The sky band is the top quarter of the rows;
its mean colour (RGB in [0, 1]) is taken per 128-pixel window along the panorama (32 windows).
Printed per model, one JSON line:

- ``within_sd``: the standard deviation of the windows' sky luminance within one canvas, the mean
  over canvases (what changes along one panorama);
- ``between_sd``: the standard deviation of the canvases' mean sky luminance (what changes from
  one seed to the next);
- ``ratio`` = within / between (the issue's bar: <= 0.5);
- ``max_jump``: the largest difference between two adjacent windows' sky colour, the largest over
  R, G and B (the bar: <= 0.15), and the seed where it happens;
- ``night_canvases``: the share of canvases whose mean sky luminance is below 0.25.

A model with one palette per canvas keeps within_sd small and max_jump small; its palettes vary
between canvases. On the data the palette is one per image (the procedural renderer draws it
per scene).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WINDOW = 128


def seeds_arg(text: str) -> list[int]:
    """``"1-8"`` or ``"1,3,5"`` -> the seeds."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def sky_windows(image: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """(H, W, 3) image in [-1, 1] -> (W // window, 3) mean sky colour (top quarter) per window, in [0, 1]."""
    h, w, _ = image.shape
    sky = (np.asarray(image, dtype=np.float64)[: h // 4] + 1) / 2
    n = w // window
    return sky[:, : n * window].reshape(h // 4, n, window, 3).mean((0, 2))


def palette_figures(windows: list[np.ndarray], seeds: list[int]) -> dict:
    """Per-canvas window colours (each (n, 3)) -> the figures of the module docstring."""
    lum = np.array([w.mean(1) for w in windows])                              # (canvases, n)
    jumps = [np.abs(np.diff(w, axis=0)).max() for w in windows]
    within, between = lum.std(1).mean(), lum.mean(1).std()
    r = lambda v: round(float(v), 3)  # noqa: E731
    worst = int(np.argmax(jumps))
    return {"within_sd": r(within), "between_sd": r(between), "ratio": r(within / between) if between > 0 else None,
            "max_jump": r(jumps[worst]), "max_jump_seed": seeds[worst],
            "night_canvases": r((lum.mean(1) < 0.25).mean()), "sky_luminance_per_canvas": [r(v) for v in lum.mean(1)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=[None], help="model files / checkpoints / run dirs (default: bundled)")
    ap.add_argument("--weights", choices=("g_ema", "g"), default="g_ema", help="g: a checkpoint's raw G")
    ap.add_argument("--seeds", default="1-8", help="canvas seeds, e.g. 1-8 or 1,2,5")
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--height", type=int, default=128)
    args = ap.parse_args()
    if args.width < 2 * WINDOW or args.height < 4:
        raise SystemExit(f"palette.py: --width must be >= {2 * WINDOW} and --height >= 4")
    seeds = seeds_arg(args.seeds)
    torch.set_grad_enabled(False)
    from stripes import load

    for path in args.models:
        model = load(path, args.weights)
        windows = [sky_windows(model.generate(s, args.width, args.height)) for s in seeds]
        print(json.dumps({"model": str(path or "bundled"), "weights": args.weights, "seeds": args.seeds,
                          "size": f"{args.width}x{args.height}", **palette_figures(windows, seeds)}))


if __name__ == "__main__":
    main()
