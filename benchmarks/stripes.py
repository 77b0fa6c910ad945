"""Where the bundled model's stripes come from (issue 16, section 1).

Two measurements:

* **Ablations in the image.** For ``--seeds`` seeds, a 1024 x 256 region on the horizon; the
  power spectrum of the sky band (rows 0-95) and of the ground band (rows 160-255), each row's
  mean removed, Hann-windowed; the strongest bin with horizontal variation in the band of
  periods 8-64 px, as a multiple of the median power at its radius (a stripe is a narrow peak,
  texture is not), and the band's total power. The same with every noise injection at 0, with
  the horizontal coordinate frozen (column 0's phase everywhere), and with zl constant over the
  canvas (each seed's zl of cell (0, 0) in every cell).
* **The structure features' response to zl.** zS over 8 x 400 cells of each seed, its
  horizontal power spectrum averaged over channels, rows and seeds, relative to its median:
  zl is white noise, so this is the gain of GS (with zg and the coordinates) per frequency, in
  cycles per latent cell (one cell = 2^n_up pixels).

    python benchmarks/stripes.py --seeds 8 --out docs/stripes
    python benchmarks/stripes.py --models runs/a runs/b --zs-only     # compare models
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 1024, 256
BANDS = {"sky": (0, 96), "ground": (160, 256)}


def grey(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [-1, 1] -> (H, W) luma in [0, 1]."""
    return ((np.clip(img, -1, 1) + 1) / 2) @ np.array([0.299, 0.587, 0.114])


def band_spectrum(imgs: list[np.ndarray], r0: int, r1: int) -> np.ndarray:
    """Mean rfft2 power of rows r0..r1 (each row's mean removed, Hann window)."""
    acc = 0.0
    for x in imgs:
        t = grey(x)[r0:r1]
        t = t - t.mean(axis=1, keepdims=True)
        win = np.outer(np.hanning(t.shape[0]), np.hanning(t.shape[1]))
        acc = acc + np.abs(np.fft.rfft2(t * win)) ** 2
    return acc / len(imgs)


def stripe_peak(P: np.ndarray, rows: int, width: int) -> dict:
    """The strongest narrow peak with horizontal variation, periods 8-64 px."""
    fy = np.broadcast_to(np.fft.fftfreq(rows)[:, None], P.shape)
    fx = np.broadcast_to(np.fft.rfftfreq(width)[None, :], P.shape)
    r = np.hypot(fy, fx)
    band = (r > 1 / 64) & (r < 1 / 8) & (fx > 1 / 200)
    bins = np.digitize(r, np.linspace(0, 0.71, 90))
    med = np.zeros_like(P)
    for b in np.unique(bins):
        m = bins == b
        med[m] = np.median(P[m])
    rel = np.where(band, P / med, 0)
    a, b = np.unravel_index(np.argmax(rel), P.shape)
    return {"peak_over_median": float(rel[a, b]), "horizontal_period_px": float(1 / fx[a, b]),
            "period_px": float(1 / r[a, b]), "angle_deg": float(np.degrees(np.arctan2(fy[a, b], fx[a, b]))),
            "band_power": float(P[band].sum())}


def structure_features(model, seed: int, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(zg (1, zg_dim), zS (1, C, rows, cols)) of ``seed`` around the horizon from column 0."""
    cfg = model.config.generator
    lost = cfg.gs_layers * (cfg.gs_kernel - 1)  # GS's valid convs shrink zl by this many cells
    c = model.canvas(seed)
    r0 = -(rows + lost) // 2
    zl = c.zl(r0, rows + lost, 0, cols + lost)[None]
    co = c.coords(cfg.coords, r0, rows + lost, 0, cols + lost)[None]
    zg = c.zg().reshape(1, -1)
    return zg, model.generator.structure(zg, zl, co)


def zs_gain(model, seeds: int, rows: int = 8, cols: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in cycles per cell, zS horizontal power / its median) over ``seeds`` seeds."""
    acc = 0.0
    for s in range(seeds):
        x = structure_features(model, s, rows, cols)[1][0].double().numpy()
        x = x - x.mean(axis=2, keepdims=True)
        acc = acc + (np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2).mean(axis=(0, 1))
    f = np.fft.rfftfreq(x.shape[-1])
    return f, acc / np.median(acc)


def gt_transfer(model, freqs=(0.05, 0.1, 0.2, 0.3, 0.42, 0.5), rows: int = 11, cols: int = 60) -> dict:
    """How much of a horizontal zS wave of each frequency GT passes to the image: RGB energy of
    the change per unit energy of a small cosine added to zS (one random channel direction,
    two phases, seed 0, no noise), relative to the lowest frequency's."""
    G = model.generator
    zg, zs = structure_features(model, 0, rows, cols)
    styles = G.styles(zg)
    base = G.texture(zs, styles, None)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(1, zs.shape[1], 1, 1, generator=gen)
    direction /= direction.norm()
    x = torch.arange(cols, dtype=torch.float64)
    eps = 0.05 * float(zs.std())
    energy = {}
    for f in freqs:
        e = []
        for ph in (0.0, 0.5 * np.pi):
            d = eps * direction * torch.cos(2 * np.pi * f * x + ph).float().view(1, 1, 1, cols)
            e.append(float(((G.texture(zs + d, styles, None) - base) ** 2).mean() / (d ** 2).mean()))
        energy[f] = float(np.mean(e))
    low = energy[freqs[0]]
    return {f"{f:.2f}": v / low for f, v in energy.items()}


def zs_summary(f: np.ndarray, gain: np.ndarray) -> dict:
    k = int(np.argmax(gain[5:])) + 5
    return {"peak_cycles_per_cell": float(f[k]), "peak_period_cells": float(1 / f[k]), "peak_gain": float(gain[k]),
            "gain_0.40_0.50": float(gain[(f >= 0.4) & (f <= 0.5)].mean())}


def ablations(model, seeds: int) -> tuple[dict, dict]:
    from infinitygan.latents import Canvas

    region = model.region(WIDTH, HEIGHT)
    synth = model.synthesizer("cpu")
    out, pictures = {}, {}

    def measure(tag):
        imgs = [synth.render(model.canvas(s), region) for s in range(seeds)]
        out[tag] = {k: stripe_peak(band_spectrum(imgs, *rr), rr[1] - rr[0], WIDTH) for k, rr in BANDS.items()}
        pictures[tag] = imgs[0]

    measure("bundled model")
    noise_w = [m.weight for m in model.generator.modules() if type(m).__name__ == "NoiseInjection"]
    saved = [w.clone() for w in noise_w]
    for w in noise_w:
        w.zero_()
    measure("noise off")
    for w, v in zip(noise_w, saved):
        w.copy_(v)
    orig_coords, orig_zl = Canvas.coords, Canvas.zl

    def frozen(self, cfg, row0, rows, col0, cols, device="cpu", dtype=torch.float32):
        c = orig_coords(self, cfg, row0, rows, col0, cols, device, dtype)
        c[1:] = c[1:, :, :1]
        return c

    def constant(self, row0, rows, col0, cols, device="cpu", dtype=torch.float32):
        return orig_zl(self, 0, 1, 0, 1, device, dtype).expand(-1, rows, cols).contiguous()

    try:
        Canvas.coords = frozen
        measure("horizontal coordinate frozen")
        Canvas.coords = orig_coords
        Canvas.zl = constant
        measure("zl constant over the canvas")
    finally:
        Canvas.coords, Canvas.zl = orig_coords, orig_zl
    return out, pictures


def load(path, weights: str):
    """A model file / run folder (None: the bundled model); with ``weights == "g"`` the ``g.``
    tensors of a training checkpoint (a checkpoint file, or a run folder's newest)."""
    import infinitygan as ig

    if weights == "g_ema" or path is None:
        return ig.load_model(path)
    from safetensors.torch import load_file

    p = Path(path)
    ckpt = p if p.is_file() else sorted((p / "checkpoints").glob("ckpt-*.safetensors"))[-1]
    model = ig.load_model(ckpt.parent.parent)
    state = {k[2:]: v for k, v in load_file(str(ckpt)).items() if k.startswith("g.")}
    model.generator.load_state_dict(state)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="model files / run folders (default: the bundled model)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--zs-only", action="store_true", help="only the zS response (fast)")
    ap.add_argument("--weights", choices=("g_ema", "g"), default="g_ema",
                    help="g: the trained G of a run's checkpoint (a run folder: its newest; early in a run "
                         "G_ema still lags near initialisation)")
    ap.add_argument("--out", default=None, help="folder for stripes.png and stripes.json")
    args = ap.parse_args()

    import infinitygan as ig

    torch.set_grad_enabled(False)
    paths = args.models or [None]
    result: dict = {"seeds": args.seeds, "zs": {}}
    curves = {}
    first = None
    for p in paths:
        name = "bundled" if p is None else str(p)
        model = load(p, args.weights)
        if first is None:
            first = model
        f, gain = zs_gain(model, args.seeds)
        curves[name] = (f, gain)
        result["zs"][name] = zs_summary(f, gain)
        result["zs"][name]["gt_transfer_relative"] = gt_transfer(model)
    if not args.zs_only:
        result["ablations"], pictures = ablations(first, args.seeds)
    print(json.dumps(result, indent=1))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "stripes.json").write_text(json.dumps(result, indent=1) + "\n")
        if args.zs_only:
            fig, axes = plt.subplots(1, 1, figsize=(7, 4))
            ax_curve = axes
        else:
            fig = plt.figure(figsize=(14, 8))
            gs = fig.add_gridspec(3, 2)
            for i, tag in enumerate(("bundled model", "zl constant over the canvas")):
                a = fig.add_subplot(gs[i, :])
                a.imshow((np.clip(pictures[tag], -1, 1) + 1) / 2)
                pk = result["ablations"][tag]["ground"]
                who = "bundled model" if paths[0] is None else str(paths[0])
                shown = who if tag == "bundled model" else f"{who}, {tag}"
                a.set_title(f"{shown}, seed 0 (ground: peak {pk['peak_over_median']:.0f}x the median power at "
                            f"its radius, horizontal period {pk['horizontal_period_px']:.1f} px)")
                a.set_xticks([]), a.set_yticks([])
            ax_curve = fig.add_subplot(gs[2, 1])
            a = fig.add_subplot(gs[2, 0])
            P = band_spectrum([pictures["bundled model"]], *BANDS["ground"])
            a.imshow(np.log10(np.fft.fftshift(P, axes=0) + 1e-9), cmap="magma", aspect="auto")
            a.set_title("log power of the ground band (seed 0): fy vertical, fx horizontal")
            a.set_xticks([]), a.set_yticks([])
        for name, (f, gain) in curves.items():
            ax_curve.semilogy(f, gain, label=name)
        ax_curve.set_xlabel("cycles per latent cell (1 cell = 16 px)")
        ax_curve.set_ylabel("zS power / median")
        ax_curve.set_title("GS's gain on white zl (horizontal)")
        ax_curve.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "stripes.png", dpi=72)
        print(f"wrote {out / 'stripes.png'}")


if __name__ == "__main__":
    main()
