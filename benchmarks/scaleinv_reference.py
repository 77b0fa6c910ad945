"""What the N x ScaleInv columns give images that are right by construction (issue 30 section 3).

    python benchmarks/scaleinv_reference.py [--config benchmarks/table1/mini/infinitygan.yaml] \
        [--num 256] [--seed 0] [--scales 1,2,4,8] [--picture docs/evaluation/mini/scaleinv_reference.jpg]

The N x column compares N F x N F views, brought to R x R, with the 1x real images (R x R). With
no real images at N times the field of view, the paper assumes a landscape is self-similar. The
procedural world lets us test that assumption: its scenes continue sideways for ever
(``render_landscape(seed, F, N F)`` is the same scene N times wider), and the renderer can draw
above and below its frame. References built from a second set of real images (disjoint from the
compared set, as for the floor), per scale N; at 1x each is the real image itself (tested), so
its 1x figure is the floor (`infinitygan eval --floor`: the same two real sets):

* ``world``: what an ideal infinite-landscape generator would show: the procedural world itself
  seen with N times the field of view (``render_landscape(seed, F, N F, top=-(N-1)F/2, rows=N F)``:
  the frame in the middle, the sky and its clouds going on above, the ground below; the
  renderer's ground texture is not perspective-correct sideways, so below the frame its patches
  stretch into vertical streaks), Lanczos to N R like the real images, then the protocol's
  ``paper`` resize to R.
* ``extended`` / ``extended-flat``: the same with the rows above and below guessed instead of
  rendered: the scene N times wider (Lanczos to R-pixel height), in the middle rows of an N R
  square; ``extended`` continues the edge rows (their clouds and grass become vertical
  streaks), ``extended-flat`` fills with the edge rows' mean colour (no texture). How much the
  columns depend on the texture far from the horizon.
* ``mosaic``: N x N different real images side by side (whole scenes repeated like a texture,
  what a model that re-creates its training window everywhere would show), then to R (from a
  third set of real images; at 1x the floor's second set).

Printed: one JSON line per (reference, scale) with the SWD x 1e3 (the protocol's, the
evaluation's own real set and seed) and its levels (finest first). With ``--model NAME=CKPT``
(``--references ''`` to skip the references), also one line per (model, scale): the model's
N x views (the protocol's) against the real set seen N times wider and taller (``world``): the
N x column with real images of the same field of view, which the paper did not have. At 1x it
is the usual 1x column.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


FILLS = ("edge", "flat", "world")
REFERENCES = ("world", "extended", "extended-flat", "mosaic")
EDGE_ROWS = 4


def extended_view(seed: int, full: int, ref: int, n: int, fill: str = "edge") -> np.ndarray:
    """(ref, ref, 3) uint8: the scene ``seed`` n times wider, padded to a square, to ``ref``.
    ``fill``: ``edge`` continues the top and bottom rows (their texture becomes vertical streaks),
    ``flat`` fills with the mean colour of the top / bottom ``EDGE_ROWS`` rows (no texture)."""
    from infinitygan.data.procedural import render_landscape
    from infinitygan.metrics import protocol as P

    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "world":   # the renderer draws what is above and below the frame: no guess
        tall = Image.fromarray(render_landscape(seed, full, n * full, top=-((n - 1) * full // 2), rows=n * full))
        square = np.array(tall.resize((n * ref, n * ref), Image.Resampling.LANCZOS), dtype=np.uint8)
        x = torch.from_numpy(np.ascontiguousarray(square)).permute(2, 0, 1)[None]
        return P.quantize(P.resize(P.to_unit(x), ref, "paper"))[0].permute(1, 2, 0).numpy()
    wide = Image.fromarray(render_landscape(seed, full, n * full))
    band = np.asarray(wide.resize((n * ref, ref), Image.Resampling.LANCZOS), dtype=np.uint8)
    top = (n * ref - ref) // 2
    rows = np.clip(np.arange(n * ref) - top, 0, ref - 1)    # edge rows continued above and below
    square = band[rows]
    if fill == "flat" and n > 1:
        square = square.copy()
        square[:top] = np.round(band[:EDGE_ROWS].reshape(-1, 3).mean(0)).astype(np.uint8)
        square[top + ref:] = np.round(band[-EDGE_ROWS:].reshape(-1, 3).mean(0)).astype(np.uint8)
    square = torch.from_numpy(square).permute(2, 0, 1)[None]
    return P.quantize(P.resize(P.to_unit(square), ref, "paper"))[0].permute(1, 2, 0).numpy()


def mosaic_view(tiles: torch.Tensor, ref: int) -> np.ndarray:
    """(n*n, 3, ref, ref) uint8 real images -> (ref, ref, 3) uint8: the n x n grid brought to ref."""
    from infinitygan.metrics import protocol as P

    n = int(round(tiles.shape[0] ** 0.5))
    grid = tiles.view(n, n, 3, ref, ref).permute(2, 0, 3, 1, 4).reshape(1, 3, n * ref, n * ref)
    return P.quantize(P.resize(P.to_unit(grid), ref, "paper"))[0].permute(1, 2, 0).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "benchmarks/table1/mini/infinitygan.yaml"))
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scales", default="1,2,4,8")
    ap.add_argument("--references", default="world,extended,extended-flat,mosaic",
                    help="which references, comma-separated: world, extended (edge rows continued), extended-flat, mosaic")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                    help="also score this model's N x views against the world's N x views (the real images seen "
                         "with N times the field of view) instead of the 1x reals (repeatable)")
    ap.add_argument("--picture", default=None, help="save the first 4 views of each reference and scale (JPEG/PNG)")
    a = ap.parse_args(argv)

    from infinitygan.config import load_config
    from infinitygan.errors import UserError
    from infinitygan.metrics import protocol as P
    from infinitygan.metrics.evaluate import RealSet, _open_data
    from infinitygan.metrics.swd import SWDAccumulator

    try:
        scales = [int(s) for s in a.scales.split(",")]
        if a.num < 2 or any(s < 1 for s in scales) or not set(filter(None, a.references.split(","))) <= set(REFERENCES):
            raise ValueError
    except ValueError:
        print(f"error: --scales must be positive integers, --num >= 2 and --references among {', '.join(REFERENCES)} "
              f"(got {a.scales!r}, {a.num}, {a.references!r})", file=sys.stderr)
        return 2
    try:
        cfg = load_config(a.config)
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    proto = P.EvalProtocol.of(cfg)
    full, ref = proto.full_size, proto.reference_size
    data = _open_data("procedural", cfg, proto)
    real = RealSet("procedural", data, a.num, a.seed, size=ref)
    second = RealSet("procedural", data, a.num, a.seed + 1, exclude=real.indices, size=ref)   # the floor's set
    tiles = RealSet("procedural", data, max(scales) ** 2 * a.num, a.seed + 2, exclude=real.indices, size=ref)
    shown: list[np.ndarray] = []
    for kind in filter(None, a.references.split(",")):
        for n in scales:
            if kind != "mosaic":
                fill = {"world": "world", "extended": "edge", "extended-flat": "flat"}[kind]
                views = [extended_view(data.image_seed(int(i)), full, ref, n, fill) for i in second.indices]
            elif n == 1:
                views = list(second.images.permute(0, 2, 3, 1).numpy())
            else:
                views = [mosaic_view(tiles.images[k * n * n:(k + 1) * n * n], ref) for k in range(a.num)]
            fake = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()
            acc = SWDAccumulator(seed=a.seed)
            for b in real.batches():
                acc.add_real(b)
            for i in range(0, fake.shape[0], 32):
                acc.add_fake(fake[i:i + 32])
            r = acc.compute()
            print(json.dumps({"reference": kind, "scale": n, "swd": round(r["mean"], 2),
                              "levels": [round(v, 1) for v in r["levels"]], "resolutions": r["resolutions"],
                              "num": a.num, "compared_size": ref}), flush=True)
            shown.append(np.concatenate(views[:4], axis=1))
    world_real: dict[int, torch.Tensor] = {}
    for spec in a.model:
        name, _, path = spec.partition("=")
        from infinitygan.api import load_model

        try:
            model = load_model(path or name)
        except (UserError, OSError) as e:
            print(f"error: --model {spec}: {e}", file=sys.stderr)
            return 2
        own = P.EvalProtocol.of(model.config)
        if (own.full_size, own.reference_size) != (full, ref):
            print(f"error: --model {spec}: its protocol ({own.full_size} px, compared at {own.reference_size}) is not "
                  f"--config's ({full}, {ref}); pass its config with --config", file=sys.stderr)
            return 2
        for n in scales:
            if n not in world_real:  # the compared set's own images, seen N times wider and taller
                world_real[n] = torch.from_numpy(np.stack([extended_view(data.image_seed(int(i)), full, ref, n, "world")
                                                           for i in real.indices])).permute(0, 3, 1, 2).contiguous()
            acc = SWDAccumulator(seed=a.seed)
            acc.add_real(world_real[n])
            for b in P.fake_batches(model, P.placements(model.config, a.num, n, a.seed), "cpu", ("paper",), size=ref):
                acc.add_fake(b["paper"])
            r = acc.compute()
            print(json.dumps({"model": name, "scale": n, "swd_vs_world": round(r["mean"], 2),
                              "levels": [round(v, 1) for v in r["levels"]], "num": a.num}), flush=True)
    if a.picture:  # rows: extended at each scale, then mosaic; 4 views each, shown at twice the size
        img = Image.fromarray(np.concatenate(shown, axis=0))
        img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST).save(a.picture, quality=92)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
