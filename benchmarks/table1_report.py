"""Figures of the miniature Table 1 (docs/evaluation.md) from the CSVs of `infinitygan eval`.

    python benchmarks/table1_report.py --csv-dir docs/evaluation --out docs \
        --models infinitygan-tiny=runs/table1/infinitygan-tiny/kept/ckpt-....safetensors,...

Writes OUT/evaluation_swd.png (SWD against scale, one line per model and resize mode, the real
floor as a band) and OUT/evaluation_samples.jpg (per model: four 1x views and two 8x views
downsampled to the full size with the clean resize, i.e. what the metric compares), and prints
the markdown table. Needs matplotlib (the `plots` extra).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_rows(csv_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for p in sorted(csv_dir.glob("*.csv")):
        out[p.stem] = list(csv.DictReader(p.open()))
    return out


def table(rows: dict[str, list[dict]], order: list[str], floor: str = "floor") -> str:
    scales = sorted({int(r["scale"]) for k in order for r in rows.get(k, [])})
    head = "| model | resize | " + " | ".join(f"{s}x" for s in scales) + f" | {scales[-1]}x / 1x |"
    lines = [head, "|" + "---|" * (len(scales) + 3)]
    for name in order:
        for mode in ("paper", "clean"):
            vals = {int(r["scale"]): float(r["value"]) for r in rows.get(name, []) if r["resize"] == mode}
            if not vals:
                continue
            cells = [f"{vals[s]:.1f}" if s in vals else "-" for s in scales]
            ratio = f"{vals[scales[-1]] / vals[scales[0]]:.2f}" if scales[0] in vals and scales[-1] in vals else "-"
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {ratio} |")
    for r in rows.get(floor, [])[:1]:
        lines.append(f"| real vs real, {r['num_real']} vs {r['num_real']} (floor) | - | {float(r['value']):.1f} "
                     "(every scale) |" + " |" * len(scales))
    return "\n".join(lines)


def plot(rows: dict[str, list[dict]], order: list[str], out: Path, floor: str = "floor") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, name in enumerate(order):
        for mode, style in (("paper", "-"), ("clean", "--")):
            pts = sorted((int(r["scale"]), float(r["value"])) for r in rows.get(name, []) if r["resize"] == mode)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=f"C{i}",
                        label=f"{name} ({mode})")
    for r in rows.get(floor, [])[:1]:
        ax.axhline(float(r["value"]), color="gray", lw=1, ls=":",
                   label=f"real vs real, {r['num_real']} vs {r['num_real']} (floor)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1x", "2x", "4x", "8x"])
    ax.set_xlabel("scale N (views N x 197 px, downsampled to 197)")
    ax.set_ylabel("SWD x1e3 (lower is better)")
    ax.set_title("SWD against scale, procedural landscapes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)


def samples(models: dict[str, str], out: Path, seed: int = 11) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from infinitygan.api import load_model
    from infinitygan.metrics import protocol as P

    fig, axes = plt.subplots(len(models), 6, figsize=(12, 2.2 * len(models)), dpi=100, squeeze=False)
    for row, (name, path) in enumerate(models.items()):
        model = load_model(path or None)
        views = P.placements(model.config, 4, 1, seed) + P.placements(model.config, 2, 8, seed + 1)
        imgs = [b["clean"] for b in P.fake_batches(model, views, "cpu", ("clean",), batch=1)]
        for col, img in enumerate(imgs):
            ax = axes[row][col]
            ax.imshow(img[0].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 0:
                ax.set_title("1x" if col < 4 else "8x (1576 px -> 197)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv-dir", default="docs/evaluation")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--models", default="", help="NAME=PATH,... for the sample strip (PATH empty: bundled)")
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--table", default="infinitygan-tiny,stylegan2-nci,stylegan2-nci-pfg",
                    help="CSV stems of the models of the table and the plot, in order")
    ap.add_argument("--floor", default="floor", help="CSV stem of the real-vs-real floor (same --num)")
    args = ap.parse_args()
    rows = read_rows(Path(args.csv_dir))
    order = [k for k in args.table.split(",") if k in rows]
    print(table(rows, order, args.floor))
    plot(rows, order, Path(args.out) / "evaluation_swd.png", args.floor)
    if args.models and not args.no_samples:
        models = dict(kv.split("=", 1) for kv in args.models.split(","))
        samples(models, Path(args.out) / "evaluation_samples.jpg")


if __name__ == "__main__":
    main()
