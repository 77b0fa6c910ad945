"""Figures of the miniature Table 1 (docs/evaluation.md) from the CSVs of `infinitygan eval`.

    python benchmarks/table1_report.py --csv-dir docs/evaluation/mini --out docs/evaluation/mini \
        --models infinitygan=docs/evaluation/mini/models/infinitygan.safetensors,...

Writes OUT/evaluation_swd.png (SWD against scale, one line per model and resize mode, the real
floor as a band; the training-resolution column `patch` as its own marker at the left) and
OUT/evaluation_samples.jpg (per model: four 1x views and two 8x views downsampled to the
reference size with the clean resize, i.e. what the metric compares), and prints the markdown
table (columns: `patch` when measured, then N x). Needs matplotlib (the `plots` extra).
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


PATCH = "patch"


def _col(scale: str):
    return PATCH if scale == PATCH else int(scale)


def _columns(rows: dict[str, list[dict]], names: list[str]) -> list:
    cols = {_col(r["scale"]) for k in names for r in rows.get(k, [])}
    return ([PATCH] if PATCH in cols else []) + sorted(c for c in cols if c != PATCH)


def _head(c) -> str:
    return "train-res (patch)" if c == PATCH else f"{c}x"


def _patch_floor(rows: dict[str, list[dict]], name: str, floor: str) -> str | None:
    """The real-vs-real patch floor for model ``name``: CSV ``FLOOR-NAME`` if there is one, else ``FLOOR``'s."""
    for stem in (f"{floor}-{name}", floor):
        for r in rows.get(stem, []):
            if r["scale"] == PATCH and r["resize"] == "paper":
                return f"floor {float(r['value']):.1f} at {r['compared_size']} px"
    return None


def table(rows: dict[str, list[dict]], order: list[str], floor: str = "floor") -> str:
    cols = _columns(rows, order)
    scales = [c for c in cols if c != PATCH]
    head = "| model | resize | " + " | ".join(_head(c) for c in cols) + f" | {scales[-1]}x / 1x |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for name in order:
        for mode in ("paper", "clean"):
            vals = {_col(r["scale"]): float(r["value"]) for r in rows.get(name, []) if r["resize"] == mode}
            if not vals:
                continue
            cells = [f"{vals[c]:.1f}" if c in vals else "-" for c in cols]
            if PATCH in vals:  # models train on patches of different sizes: each its own patch floor
                pf = _patch_floor(rows, name, floor)
                cells[cols.index(PATCH)] += f" ({pf})" if pf else ""
            ratio = f"{vals[scales[-1]] / vals[scales[0]]:.2f}" if scales[0] in vals and scales[-1] in vals else "-"
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {ratio} |")
    fl = {_col(r["scale"]): r for r in rows.get(floor, []) if r["resize"] == "paper"}
    if fl:
        n = next(iter(fl.values()))["num_real"]
        cells = [f"{float(fl[PATCH]['value']):.1f}" if c == PATCH and PATCH in fl
                 else (f"{float(fl[1]['value']):.1f}" if c != PATCH and 1 in fl else "-") for c in cols]
        lines.append(f"| real vs real, {n} vs {n} (floor; reals are not resized) | - | " + " | ".join(cells) + " | - |")
    return "\n".join(lines)


def plot(rows: dict[str, list[dict]], order: list[str], out: Path, floor: str = "floor") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    x_patch = 0.5  # the training-resolution column, left of 1x on the log axis
    ref = full = None
    for i, name in enumerate(order):
        for mode, style in (("paper", "-"), ("clean", "--")):
            mine = [r for r in rows.get(name, []) if r["resize"] == mode]
            pts = sorted((int(r["scale"]), float(r["value"])) for r in mine if r["scale"] != PATCH)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=f"C{i}",
                        label=f"{name} ({mode})")
            for r in mine:
                ref, full = r.get("reference_size") or ref, r.get("full_size") or full
                if r["scale"] == PATCH and mode == "paper":
                    ax.plot([x_patch], [float(r["value"])], marker="s", color=f"C{i}", ls="none")
    for r in rows.get(floor, []):
        if r["resize"] != "paper":
            continue
        if r["scale"] == PATCH:
            ax.plot([x_patch], [float(r["value"])], marker="s", color="gray", ls="none")
        else:
            ax.axhline(float(r["value"]), color="gray", lw=1, ls=":",
                       label=f"real vs real, {r['num_real']} vs {r['num_real']} (floor)")
    ax.set_xscale("log", base=2)
    has_patch = any(r["scale"] == PATCH for k in order for r in rows.get(k, []))
    ticks = ([x_patch] if has_patch else []) + [1, 2, 4, 8]
    ax.set_xticks(ticks, (["train-res"] if has_patch else []) + ["1x", "2x", "4x", "8x"])
    ax.set_xlabel(f"scale N (N x the model's full size, downsampled to {ref or 197}); "
                  "squares: training patches", fontsize=8)
    ax.set_ylabel("SWD x1e3 (lower is better)")
    ax.set_title(f"SWD against scale, procedural landscapes (compared at {ref or 197} px)")
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
            ref = P.default_reference_size(model.config)
            full = model.config.training.full_size  # differs between models: every row says its own
            ax.set_title(f"1x ({full} px -> {ref})" if col < 4 else f"8x ({8 * full} px -> {ref})", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv-dir", default="docs/evaluation")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--models", default="", help="NAME=PATH,... for the sample strip (PATH empty: bundled)")
    ap.add_argument("--no-samples", action="store_true")
    ap.add_argument("--table", default="infinitygan,stylegan2-nci,stylegan2-nci-patched,stylegan2-nci-pfg",
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
