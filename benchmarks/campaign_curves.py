"""Learning curves of campaigns: a metric against images seen, from their progress logs.

    python benchmarks/campaign_curves.py [NAME ...] [--metric swd_1x] [--root .] [--floor 17.9] \
        [--plot docs/evaluation/campaigns.png]

Reads ``campaigns/NAME/progress.tsv`` (every campaign when no NAME is given), takes the ``eval``
rows that carry the metric (the last row of an iteration wins: a later measurement with more
eval seeds replaces an earlier one), prints one JSON line per campaign (its points, the best
point and whether it has plateaued) and, with ``--plot``, draws the curves (matplotlib, the
``plots`` extra). Points come from ``campaign eval`` (the newest checkpoint) and
``campaign eval --checkpoint`` (the ones kept by ``train --keep-every``).

Plateaued: the best value of the last ``--window`` points is not lower than
``(1 - --tolerance)`` x the best value before them (default: the last 3 points improved by less
than 5%); ``null`` until there are ``window + 1`` points.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infinitygan.campaign import progress  # noqa: E402


def curve(rows: list[progress.Row], metric: str) -> list[tuple[int, int, float]]:
    """(iteration, images, value) of the eval rows carrying ``metric``, by iteration (last row wins)."""
    points = {r.iteration: (r.iteration, r.images, r.metrics[metric])
              for r in rows if r.event == "eval" and metric in r.metrics}
    return [points[i] for i in sorted(points)]


def plateaued(values: list[float], window: int = 3, tolerance: float = 0.05) -> bool | None:
    """Whether the last ``window`` values improved on the best before them by less than ``tolerance``
    (lower is better); None while there are too few values to say."""
    if len(values) <= window:
        return None
    return min(values[-window:]) >= (1 - tolerance) * min(values[:-window])


def summary(name: str, points: list[tuple[int, int, float]], window: int = 3, tolerance: float = 0.05) -> dict:
    values = [v for _, _, v in points]
    best = min(points, key=lambda p: p[2]) if points else None
    return {"campaign": name, "points": [{"iteration": i, "images": n, "value": round(v, 2)} for i, n, v in points],
            "best": None if best is None else {"iteration": best[0], "images": best[1], "value": round(best[2], 2)},
            "plateaued": plateaued(values, window, tolerance)}


def plot(curves: dict[str, list[tuple[int, int, float]]], metric: str, out: Path, floor: float | None) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("campaign_curves: --plot needs matplotlib (pip install 'infinitygan[plots]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in curves.items():
        if points:
            ax.plot([n for _, n, _ in points], [v for _, _, v in points], marker="o", ms=3, label=name)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", lw=1, label=f"real vs real floor ({floor:g})")
        ax.axhline(2 * floor, color="grey", ls=":", lw=1, label=f"2x the floor ({2 * floor:g})")
    ax.set_xlabel("images seen")
    ax.set_ylabel(metric.replace("swd_", "SWD x1e3, "))
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="campaigns (default: all in ROOT/campaigns)")
    ap.add_argument("--root", default=".", help="the checkout holding campaigns/")
    ap.add_argument("--metric", default="swd_1x", help="a progress-log metric: swd_1x, swd_8x, swd_patch, ...")
    ap.add_argument("--floor", type=float, default=None, help="the metric's real-vs-real floor (drawn with 2x it)")
    ap.add_argument("--window", type=int, default=3, help="points in the plateau test")
    ap.add_argument("--tolerance", type=float, default=0.05, help="relative improvement below which it has plateaued")
    ap.add_argument("--plot", type=Path, default=None, help="write the curves to this image")
    a = ap.parse_args(argv)
    base = Path(a.root) / "campaigns"
    names = a.names or sorted(p.parent.name for p in base.glob("*/progress.tsv"))
    missing = [n for n in names if not (base / n / "progress.tsv").is_file()]
    if missing:
        print(f"campaign_curves: no progress log for {', '.join(missing)} in {base}", file=sys.stderr)
        return 2
    curves = {n: curve(progress.read(base / n / "progress.tsv"), a.metric) for n in names}
    for n, points in curves.items():
        print(json.dumps(summary(n, points, a.window, a.tolerance)))
    if a.plot:
        plot(curves, a.metric, a.plot, a.floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
