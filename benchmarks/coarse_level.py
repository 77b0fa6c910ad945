"""What SWD's coarsest level (16 px) holds against a model: colour statistics or layout?

    python benchmarks/coarse_level.py [--model M] [--num 256] [--seed 0]

The fixed protocol's 1x views (`infinitygan eval --scale 1`) and two disjoint real sets of
--num images each; prints one JSON line per comparison, SWD x1e3 (mean, levels finest first):

- floor: real vs real; model: real vs the views (what `eval` reports, up to the real set);
- without split skies: the views minus those whose sky (top quarter) changes luminance by more
  than 0.2 across four column strips (a day/night boundary inside one view; the same count of
  views drawn at random for the comparison row), and how many views and reals are split;
- colour stats from the nearest real: every view's per-channel mean and sd replaced by those of
  the real image nearest in those six numbers (its layout kept): what is left is layout;
- reals, colour stats from the nearest view: the converse (the reals' layouts, the model's
  colours, each real paired with the view nearest in the six numbers).

And the per-image correlation of mean and sd (brightness and contrast) per channel, both sets.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def split_skies(x: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> bool (N,): sky luminance range over four column strips > threshold."""
    a = x.double() / 255.0
    sky = a[:, :, : a.shape[2] // 4]
    n = a.shape[3] // 4
    strips = torch.stack([sky[..., i * n:(i + 1) * n].mean((1, 2, 3)) for i in range(4)], 1)
    return (strips.max(1).values - strips.min(1).values) > threshold


def colour_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, S, S) -> per-image, per-channel mean and sd, each float64 (N, 3, 1, 1)."""
    a = x.double()
    return a.mean((2, 3), keepdim=True), a.std((2, 3), keepdim=True)


def with_stats(x: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """Images x re-coloured to the given per-channel mean and sd (uint8 out)."""
    m, s = colour_stats(x)
    return ((x.double() - m) / (s + 1e-6) * sd + mean).clamp(0, 255).round().to(torch.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file or checkpoint (default: the bundled model)")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    from stripes import load

    from infinitygan.metrics import evaluate as E
    from infinitygan.metrics import protocol as P
    from infinitygan.metrics.swd import swd

    model = load(args.model, "g_ema")
    data = E._open_data("procedural", model.config, P.EvalProtocol.of(model.config))
    size = P.default_reference_size(model.config)
    idx = P.real_indices(len(data), 2 * args.num, args.seed)
    reals = torch.cat(list(P.real_batches(data, idx[:args.num], size=size)))
    reals2 = torch.cat(list(P.real_batches(data, idx[args.num:], size=size)))
    views = P.placements(model.config, args.num, 1, args.seed)
    fakes = torch.cat([b["paper"] for b in P.fake_batches(model, views, "cpu")])

    def row(name: str, a: torch.Tensor, b: torch.Tensor, **extra) -> None:
        r = swd(a.permute(0, 2, 3, 1).numpy(), b.permute(0, 2, 3, 1).numpy(), seed=args.seed)
        print(json.dumps({"compare": name, "n": len(b), "swd": round(r["mean"], 1),
                          "levels": [round(v, 1) for v in r["levels"]], **extra}), flush=True)

    row("floor (real vs real)", reals, reals2)
    row("model", reals, fakes)
    split = split_skies(fakes)
    keep = (~split).nonzero().flatten()
    rand = torch.randperm(len(fakes), generator=torch.Generator().manual_seed(args.seed))[: len(keep)]
    row("model, random subset", reals[: len(keep)], fakes[rand])
    row("model without split skies", reals[: len(keep)], fakes[keep],
        split_views=int(split.sum()), split_reals=int(split_skies(reals2).sum()))
    fm, fs = colour_stats(fakes)
    rm, rs = colour_stats(reals2)
    nearest = torch.cdist(torch.cat([fm, fs], 1).flatten(1), torch.cat([rm, rs], 1).flatten(1)).argmin(1)
    row("model, colour stats from the nearest real", reals, with_stats(fakes, rm[nearest], rs[nearest]))
    back = torch.cdist(torch.cat([rm, rs], 1).flatten(1), torch.cat([fm, fs], 1).flatten(1)).argmin(1)
    row("reals, colour stats from the nearest view", reals, with_stats(reals2, fm[back], fs[back]))
    for name, (m, s) in (("real", (rm, rs)), ("model", (fm, fs))):
        corr = [round(float(np.corrcoef(m[:, c].flatten(), s[:, c].flatten())[0, 1]), 2) for c in range(3)]
        print(json.dumps({"set": name, "corr_mean_sd_rgb": corr}))


if __name__ == "__main__":
    main()
