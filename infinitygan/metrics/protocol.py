"""The evaluation protocol of the paper (Section 4, Table 1, Appendix S): which images are compared.

Real set: ``num`` WHOLE full images of the data (F x F: 197 for paper-101, the config's
``training.full_size``), as the data loader preprocesses them (no flip, no crop), drawn without
replacement with the evaluation seed.

Fake set at scale N (the paper's "N x ScaleInv"): regions of (N F) x (N F) pixels of the
generator's infinite image, each of a random canvas seed, at a random horizontal position and at
a vertical placement drawn like the training windows' (below), downsampled to F x F and
quantized to 8 bits like a saved image. At 1x the region is F x F (for InfinityGAN a composite
of patches: the engine renders any region, and its tiles agree pixel for pixel), so no resize.

Vertical placement. A real full image is the union of the real training crops (rows 0 .. F - P),
and ``sample_training_coords`` matches the crops' row offsets (labels in [-1, 1]) with the
generator's window starts ``v`` in {0 .. V - 1} (V = ``coords.train_vertical_positions``), plus a
uniform jitter of +- half a latent cell; the window is centred on the horizon when
``v = (V - 1) / 2``. So the vertical centre of a fake view is drawn like the centre of a training
window: horizon-centred plus ``(u - V / 2) * 2^n_up`` pixels with ``u`` uniform in [0, V) (a
uniform start plus its jitter), i.e. up to +- 80 pixels for the presets (V = 10, 16-pixel cells).
With periodic vertical coordinates (``texture``) every phase is trained, so ``u`` is uniform over
the whole period. The offset is in canvas pixels at every scale: an N x view is centred where a
1x view would be, and sees N times more around it.

Resizing (``--resize``): ``paper`` is the authors' code, bilinear with ``align_corners=True`` and
no antialiasing (it aliases when downsampling by 4 or 8); ``clean`` is antialiased bicubic (the
point of clean-fid: downsample like PIL does). Both produce exactly F x F.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("paper", "clean")


def resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(N, 3, H, W) float in [-1, 1] -> (N, 3, size, size) float in [-1, 1] (identity when equal)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r} (choose from {', '.join(RESIZE_MODES)})")
    if x.shape[-2:] == (size, size):
        return x
    if mode == "paper":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp_(-1.0, 1.0)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 (N, 3, H, W), rounding like a saved PNG."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [-1, 1]."""
    return x.to(torch.float32).mul_(2.0 / 255.0).sub_(1.0)


@dataclass(frozen=True)
class Placement:
    """One fake view: canvas ``seed`` and the region's top-left pixel ``(x, y)``, size ``size``."""

    seed: int
    x: int
    y: int
    size: int


def vertical_offset_range(coords, n_up: int) -> tuple[float, float]:
    """Half-open range [lo, hi) of the vertical centre offset (pixels from horizon-centred)."""
    cell = 2 ** n_up
    if coords.system == "texture":
        return 0.0, float(coords.period * cell)
    V = coords.train_vertical_positions
    return -V / 2 * cell, V / 2 * cell


def placements(model_config, num: int, scale: int, seed: int) -> list[Placement]:
    """The ``num`` fake views at ``scale`` (regions of scale * full_size pixels).

    The draws (canvas seed, horizontal position, vertical offset) depend only on (seed, index),
    not on the scale: view i of 1x and view i of 8x share the seed and the centre.
    """
    g = model_config.generator
    full = model_config.training.full_size
    size = int(scale) * full
    lo, hi = vertical_offset_range(g.coords, g.n_up)
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), 0x5CA1E])
    out = []
    for _ in range(int(num)):
        canvas_seed = int(rng.integers(0, 2 ** 62))
        cx = int(rng.integers(-(2 ** 30), 2 ** 30))
        off = float(rng.uniform(lo, hi))
        cy = 2 + off  # horizon-centred: centre on pixel row 2 (coords.HORIZON_ROW)
        out.append(Placement(canvas_seed, cx - size // 2, int(round(cy - size / 2)), size))
    return out


def fake_batches(model, views: list[Placement], device, modes: tuple[str, ...] = ("paper",),
                 batch: int = 8, progress=None) -> Iterator[dict[str, torch.Tensor]]:
    """Render the views and yield {mode: uint8 (n, 3, F, F)} batches (one render, every mode)."""
    full = model.config.training.full_size
    synth = model.synthesizer(device)
    buf: list[torch.Tensor] = []

    def flush():
        x = torch.stack(buf)
        buf.clear()
        return {m: quantize(resize(x, full, m)) for m in modes}

    for v in views:
        img = synth.render(model.canvas(v.seed), model.region(v.size, v.size, x=v.x, y=v.y))
        buf.append(torch.from_numpy(img).permute(2, 0, 1))
        if progress is not None:
            progress.update(1)
        if len(buf) == batch:
            yield flush()
    if buf:
        yield flush()


def real_indices(n_data: int, num: int, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """``num`` distinct dataset indices (fewer if the data is smaller), drawn with ``seed``;
    ``exclude`` removes indices (for an independent second real set)."""
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), 0x4EA1])
    pool = np.arange(n_data) if exclude is None else np.setdiff1d(np.arange(n_data), exclude)
    take = min(int(num), len(pool))
    return pool[rng.choice(len(pool), size=take, replace=False)]


def real_batches(dataset, indices: np.ndarray, batch: int = 32) -> Iterator[torch.Tensor]:
    """uint8 (n, 3, F, F) batches of the real full images ``indices``."""
    for i in range(0, len(indices), batch):
        x = torch.stack([dataset[int(j)] for j in indices[i:i + batch]])
        yield quantize(x)
