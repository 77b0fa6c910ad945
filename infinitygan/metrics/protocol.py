"""The evaluation protocol of the paper (Section 4.1, Table 1, Appendix S): which images are compared.

Sizes (:class:`EvalProtocol`). F = the model's full size (``training.full_size``, 197 for the
presets); R = the reference size, the size both sets are compared at: by default the data's
pre-resize (``training.pre_resize``, 128 for the presets: the paper's real images are resized to
128 before 197, and the baselines see 128-pixel images), else F; P = the generator's training
patch (``generator.patch_size``, 101).

Real set (``N x`` columns): ``num`` whole real images AT THE REFERENCE SIZE, drawn without
replacement with the evaluation seed: the data's own preprocessing stopped at R (center crop,
Lanczos to ``pre_resize``; with R = pre_resize they are the pre-resized images themselves, never
upsampled to F and back). No flip, no crop.

Fake set at scale N (the paper's "N x ScaleInv"): regions of (N F) x (N F) pixels of the
generator's infinite image (InfinityGAN generates 197 / 128 = 1.54x the baselines' field of view,
paper Section 4.1), each of a random canvas seed, at a random horizontal position and at a
vertical placement drawn like the training windows' (below), downsampled to R x R and quantized
to 8 bits like a saved image. At 1x the region is F x F (for InfinityGAN a composite of patches:
the engine renders any region, and its tiles agree pixel for pixel), resized F -> R (none when
R = F).

Training-resolution column (``patch``, the paper's "FID at G training resolution"): P x P regions
of the generator (the size of its training patches; the same seeds and centres as the 1x views),
not resized, against P x P crops of the preprocessed real full images (F x F, exactly the images
the training crops come from), one crop per real image at a uniformly drawn position (seeded by
the evaluation seed and the image's index; no flip).

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
point of clean-fid: downsample like PIL does). Both produce exactly R x R.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("paper", "clean")
PATCH = "patch"
"""The training-resolution column's name among the scales (``--scale patch,1,2,4,8``)."""
MIN_SIZE = 16
"""Smallest compared size (the SWD's coarsest pyramid level)."""


def default_reference_size(model_config) -> int:
    """The data's pre-resize (``training.pre_resize``) when set, else the full size."""
    t = model_config.training
    return int(t.pre_resize) if t.pre_resize else int(t.full_size)


@dataclass(frozen=True)
class EvalProtocol:
    """The sizes of an evaluation (see the module docstring).

    full_size: F, the model's full image size (N x views are N F pixels);
    reference_size: R, what the reals are and what the views are downsampled to;
    patch_size: P, the training-resolution column's size.
    """

    full_size: int
    reference_size: int
    patch_size: int

    @classmethod
    def of(cls, model_config, reference_size: int | None = None) -> "EvalProtocol":
        """The protocol of a model; ``reference_size`` None: :func:`default_reference_size`."""
        full = int(model_config.training.full_size)
        ref = default_reference_size(model_config) if reference_size is None else int(reference_size)
        return cls(full, ref, int(model_config.generator.patch_size))

    def compared_size(self, scale) -> int:
        """The size both sets have in a column: P for ``patch``, R for every N x."""
        return self.patch_size if scale == PATCH else self.reference_size

    def generated_size(self, scale) -> int:
        """The side of the generated region of a column: P for ``patch``, N F for N x."""
        return self.patch_size if scale == PATCH else int(scale) * self.full_size


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


def placements(model_config, num: int, scale: int, seed: int, size: int | None = None) -> list[Placement]:
    """The ``num`` fake views at ``scale`` (regions of scale * full_size pixels, or of ``size``
    pixels when given: the training-resolution column's P x P regions).

    The draws (canvas seed, horizontal position, vertical offset) depend only on (seed, index),
    not on the scale or the size: view i of 1x, of 8x and of the patch column share the seed and
    the centre.
    """
    g = model_config.generator
    full = model_config.training.full_size
    size = int(scale) * full if size is None else int(size)
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
                 batch: int = 8, progress=None, size: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Render the views and yield {mode: uint8 (n, 3, S, S)} batches (one render, every mode),
    S = ``size`` (default: the model's reference size, :func:`default_reference_size`)."""
    full = default_reference_size(model.config) if size is None else int(size)
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


def _real_uint8(dataset, index: int, size: int | None) -> torch.Tensor:
    """Real image ``index`` as uint8 (3, S, S): the dataset's preprocessing ended at ``size``
    (``load_uint8(i, size)``; None: its full size)."""
    load = getattr(dataset, "load_uint8", None)
    if load is not None:
        arr = load(int(index), size) if size else load(int(index))
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    x = quantize(dataset[int(index)])
    if size and x.shape[-1] != size:
        raise ValueError(f"dataset images are {x.shape[-1]}px and cannot be given at {size}px")
    return x


def real_batches(dataset, indices: np.ndarray, batch: int = 32, size: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 (n, 3, S, S) batches of the real images ``indices`` at size S = ``size`` (the
    reference size; default the data's full size), never upsampled from the full images."""
    for i in range(0, len(indices), batch):
        yield torch.stack([_real_uint8(dataset, int(j), size) for j in indices[i:i + batch]])


def crop_position(full: int, patch: int, seed: int, index: int) -> tuple[int, int]:
    """(row, column) of the training-resolution crop of real image ``index``: uniform over the
    (full - patch + 1)^2 positions, a function of (seed, index) only."""
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), int(index), 0xC409])
    row, col = rng.integers(0, full - patch + 1, size=2)
    return int(row), int(col)


def real_patch_batches(dataset, indices: np.ndarray, patch: int, seed: int, batch: int = 32,
                       full: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 (n, 3, P, P) batches: one P x P crop (:func:`crop_position`) of each preprocessed
    real full image (the images the training crops come from; at size ``full``, default the
    data's full size)."""
    for i in range(0, len(indices), batch):
        out = []
        for j in indices[i:i + batch]:
            x = _real_uint8(dataset, int(j), full)
            if x.shape[-1] < patch:
                raise ValueError(f"real images of {x.shape[-1]}px are smaller than the patch {patch}")
            r, c = crop_position(x.shape[-1], patch, seed, int(j))
            out.append(x[:, r:r + patch, c:c + patch])
        yield torch.stack(out).contiguous()
