"""Sliced Wasserstein distance (SWD) on Laplacian-pyramid patch descriptors.

A pretrained-network-free image-set distance, following Karras et al. 2018 ("Progressive
Growing of GANs", Appendix D):

1. Each image is decomposed into a Laplacian pyramid: Gaussian levels ``G_0 = x``,
   ``G_{k+1} = down(blur(G_k))`` with the 5-tap binomial kernel ``[1, 4, 6, 4, 1] / 16`` (applied
   separably) and 2x decimation; ``L_k = G_k - up(G_{k+1})`` and the coarsest level is the
   Gaussian residual ``G_{n-1}`` itself. Levels go from the full resolution down to the smallest
   one whose shorter side is still ``>= min_res`` (16 px by default). With the ``ceil(s / 2)``
   decimation used here, 197 px gives 4 levels (197, 99, 50, 25) and 101 px gives 3 (101, 51, 26).
2. At every level, ``patches_per_image`` random 7x7 neighbourhoods of the 3 colour channels are
   taken from every image: one descriptor of ``3 * 7 * 7 = 147`` values each.
3. Per level and per set, the descriptors are normalised per colour channel: the mean and the
   standard deviation of each channel over all descriptors (and all 49 positions) of that set are
   subtracted / divided out.
4. Per level, the SWD between the two descriptor sets is the mean, over ``n_projections`` random
   unit directions, of the 1-D Wasserstein-1 distance between the projected sets, i.e. the mean
   absolute difference of the sorted projections; this is repeated ``n_repeats`` times with fresh
   directions and averaged. When the sets differ in size, the larger one is randomly subsampled
   (without replacement) to the size of the smaller one, afresh for each repeat.
5. Values are reported multiplied by 1e3 (the paper's convention), per level (finest first) and
   averaged over levels.

Randomness. Patch positions depend only on ``seed`` and on the index of the image inside its set
(never on the batch split or on the image contents), so streaming the same images in any batch
sizes gives the same descriptors, and the two sets use the same position stream ("common random
numbers"): ``swd(x, x)`` is exactly 0 and ``swd(a, b) == swd(b, a)`` for equally sized sets.
Projection directions come from a ``torch.Generator`` seeded with ``seed`` and are drawn on the CPU
and then moved to ``device``, so CPU and CUDA runs use the same directions.

Speed. The dominant costs are the projections (a matmul) and the sorts. On the CPU the sorts go
through NumPy (SIMD sorting kernels, many times faster than ``torch.sort`` there), split over
``torch.get_num_threads()`` threads; on other devices ``torch.sort`` is used.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PATCH_SIZE",
    "DESCRIPTOR_DIM",
    "SWDAccumulator",
    "swd",
    "to_float_images",
    "pyramid_sizes",
    "laplacian_pyramid",
]

PATCH_SIZE = 7
"""Side of the square neighbourhood of one descriptor, in pixels."""
DESCRIPTOR_DIM = 3 * PATCH_SIZE * PATCH_SIZE
"""Length of one descriptor: 3 channels x 7 x 7 = 147."""

_BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)
_DEFAULT_BATCH = 64  # images per chunk when a whole set is given as one array
_SORT_CHUNK_ELEMS = 1 << 25  # projections handled at once: (directions x descriptors) elements
_MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------------------------
# Input conversion
# ----------------------------------------------------------------------------------------------

def to_float_images(images: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Convert one batch of images to a float32 tensor (N, 3, H, W) in [-1, 1].

    Accepted inputs:

    * uint8 NumPy array or tensor, (N, H, W, 3) (channels last, as decoded by PIL) or
      (N, 3, H, W); values 0..255 are mapped linearly to [-1, 1]. A 4-D uint8 array whose last
      axis has size 3 is taken as channels last.
    * floating-point NumPy array or tensor (N, 3, H, W), assumed already in [-1, 1]; it is only
      cast to float32 (and detached).

    Args:
        images: the batch, see above.
        device: where the result goes (default: where a tensor already is, else the CPU).

    Returns:
        float32 tensor of shape (N, 3, H, W).

    Raises:
        ValueError: wrong rank, channel count or dtype.
    """
    if isinstance(images, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        t = images.detach()
    else:
        raise ValueError(
            f"expected a torch.Tensor or numpy.ndarray batch of images, got {type(images).__name__}")
    if t.ndim != 4:
        raise ValueError(
            f"expected a batch of images of rank 4 ((N, 3, H, W) float or (N, H, W, 3) uint8), "
            f"got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.shape[-1] == 3:
            t = t.permute(0, 3, 1, 2)
        t = t.to(device=device, dtype=torch.float32) * (2.0 / 255.0) - 1.0
    elif t.is_floating_point():
        t = t.to(device=device, dtype=torch.float32)
    else:
        raise ValueError(f"expected uint8 or floating-point images, got dtype {t.dtype}")
    if t.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got images of shape {tuple(t.shape)} (N, C, H, W)")
    return t.contiguous()


def _iter_batches(images: Any) -> Iterator[Any]:
    """Yield batches from one set: a single 4-D array/tensor (split into chunks) or an iterable
    of 4-D batches."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim != 4:
            raise ValueError(
                f"expected a set of images of rank 4 ((N, 3, H, W) float or (N, H, W, 3) uint8), "
                f"got shape {tuple(images.shape)}")
        for i in range(0, images.shape[0], _DEFAULT_BATCH):
            yield images[i:i + _DEFAULT_BATCH]
        return
    try:
        it = iter(images)
    except TypeError:
        raise ValueError(
            f"expected a tensor/array of images or an iterable of batches, got {type(images).__name__}"
        ) from None
    yield from it


# ----------------------------------------------------------------------------------------------
# Laplacian pyramid
# ----------------------------------------------------------------------------------------------

def pyramid_sizes(height: int, width: int, min_res: int = 16) -> list[tuple[int, int]]:
    """Sizes (h, w) of the Laplacian pyramid levels, finest first.

    Each level halves the previous one with ``ceil(s / 2)``; levels are kept while their shorter
    side is ``>= min_res``.

    Raises:
        ValueError: if the image itself is smaller than ``max(min_res, 7)``.
    """
    if min_res < PATCH_SIZE:
        raise ValueError(f"min_res must be >= {PATCH_SIZE} (the patch size), got {min_res}")
    if min(height, width) < min_res:
        raise ValueError(
            f"images of {height}x{width} px are smaller than min_res={min_res}: no pyramid level")
    sizes = [(height, width)]
    while True:
        h, w = sizes[-1]
        h, w = (h + 1) // 2, (w + 1) // 2
        if min(h, w) < min_res:
            return sizes
        sizes.append((h, w))


def _filter_axis(x: torch.Tensor, dim: int, taps: tuple[float, ...], step: int = 1) -> torch.Tensor:
    """'Valid' 1-D correlation of ``x`` with ``taps`` along ``dim``, keeping every ``step``-th
    output: ``y[i] = sum_k taps[k] * x[step * i + k]``.

    Written as a weighted sum of strided slices: on the CPU this is several times faster than a
    depthwise ``conv2d``, and computing only the kept outputs halves the decimation cost.
    """
    n_out = (x.shape[dim] - len(taps)) // step + 1
    y = None
    for k, c in enumerate(taps):
        sl = x.narrow(dim, k, step * (n_out - 1) + 1)
        if step > 1:
            sl = sl[:, :, :: step] if dim == 2 else sl[:, :, :, :: step]
        y = sl * c if y is None else y.add_(sl, alpha=c)
    return y


_TAPS = tuple(v / sum(_BINOMIAL5) for v in _BINOMIAL5)  # [1, 4, 6, 4, 1] / 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    """5-tap binomial blur ``[1, 4, 6, 4, 1] / 16`` (separable) with reflect padding.

    (N, C, H, W) -> (N, C, H, W); needs H, W >= 3.
    """
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return _filter_axis(_filter_axis(x, 2, _TAPS), 3, _TAPS)


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """Blur then keep every other pixel (the even ones): (N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)).

    Equal to ``_blur(x)[:, :, ::2, ::2]`` but only the kept outputs are computed.
    """
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return _filter_axis(_filter_axis(x, 2, _TAPS, step=2), 3, _TAPS, step=2)


def _upsample_axis(xp: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Zero insertion followed by the 2x-gain binomial filter along ``dim``, in polyphase form.

    ``xp`` is the coarse signal ``s`` (length ``n``) already edge-padded by one sample on both
    sides along ``dim`` (length ``n + 2``). Output ``2m`` is ``(s[m-1] + 6 s[m] + s[m+1]) / 8`` and
    output ``2m+1`` is ``(s[m] + s[m+1]) / 2``; the result is cropped to ``size <= 2 n``.
    """
    n = xp.shape[dim] - 2
    left, mid, right = xp.narrow(dim, 0, n), xp.narrow(dim, 1, n), xp.narrow(dim, 2, n)
    even = (left + right).add_(mid, alpha=6.0).mul_(0.125)
    odd = (mid + right).mul_(0.5)
    y = torch.stack((even, odd), dim=dim + 1)  # the two phases interleaved
    shape = list(xp.shape)
    shape[dim] = 2 * n
    return y.reshape(shape).narrow(dim, 0, size)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`_downsample`'s decimation: zero insertion + 4x-gain binomial blur.

    (N, C, h, w) -> (N, C, H, W) with ``size = (H, W)``, ``h = ceil(H/2)``, ``w = ceil(W/2)``.
    The coarse image is edge-replicated by one pixel first, so constants are reproduced exactly,
    borders included.
    """
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    y = _upsample_axis(xp, 2, size[0])  # (N, C, H, w + 2)
    return _upsample_axis(y, 3, size[1])


def laplacian_pyramid(x: torch.Tensor, min_res: int = 16) -> list[torch.Tensor]:
    """Laplacian pyramid of a batch, finest level first.

    Args:
        x: float tensor (N, C, H, W).
        min_res: smallest allowed shorter side of a level.

    Returns:
        ``len(pyramid_sizes(H, W, min_res))`` tensors; level k has shape (N, C, h_k, w_k). All but
        the last are band-pass (``G_k - up(G_{k+1})``); the last is the Gaussian residual.
    """
    sizes = pyramid_sizes(x.shape[2], x.shape[3], min_res)
    levels = []
    g = x
    for k in range(len(sizes) - 1):
        g_next = _downsample(g)
        levels.append(g - _upsample(g_next, sizes[k]))
        g = g_next
    levels.append(g)
    return levels


# ----------------------------------------------------------------------------------------------
# Descriptors
# ----------------------------------------------------------------------------------------------

def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _image_seed(seed: int, index: int) -> int:
    """32-bit seed of image ``index``'s patch positions (torch's CPU generator keeps only 32 bits)."""
    z = _splitmix64(_splitmix64(seed & _MASK64) ^ (index & _MASK64))
    return (z ^ (z >> 32)) & 0xFFFFFFFF


def _patch_uniforms(seed: int, first_index: int, n_images: int, n_levels: int,
                    patches_per_image: int) -> torch.Tensor:
    """Uniform [0, 1) numbers (n_images, n_levels, patches_per_image, 2) for the patch corners;
    each image's numbers depend only on (seed, its index in the set)."""
    g = torch.Generator(device="cpu")
    out = torch.empty(n_images, n_levels, patches_per_image, 2)
    for i in range(n_images):
        g.manual_seed(_image_seed(seed, first_index + i))
        torch.rand(n_levels, patches_per_image, 2, generator=g, out=out[i])
    return out


def _extract(level: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gather 7x7x3 neighbourhoods.

    Args:
        level: (B, 3, h, w) pyramid level.
        u: (B, P, 2) uniform numbers in [0, 1) giving the (row, column) of each patch corner.

    Returns:
        (B * P, 3, 49) descriptors, channel-major.
    """
    b, c, h, w = level.shape
    p = u.shape[1]
    u = u.to(level.device)
    ys = (u[..., 0] * (h - PATCH_SIZE + 1)).long().clamp_(max=h - PATCH_SIZE)
    xs = (u[..., 1] * (w - PATCH_SIZE + 1)).long().clamp_(max=w - PATCH_SIZE)
    r = torch.arange(PATCH_SIZE, device=level.device)
    offsets = (r[:, None] * w + r[None, :]).reshape(-1)  # (49,)
    idx = (ys * w + xs)[:, :, None] + offsets  # (B, P, 49)
    idx = idx.reshape(b, 1, p * PATCH_SIZE * PATCH_SIZE).expand(b, c, -1)
    patches = torch.gather(level.reshape(b, c, h * w), 2, idx)  # (B, 3, P*49)
    patches = patches.view(b, c, p, PATCH_SIZE * PATCH_SIZE).permute(0, 2, 1, 3)
    return patches.reshape(b * p, c, PATCH_SIZE * PATCH_SIZE)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation over a whole set: (N, 3, 49) -> (N, 147)."""
    mean = desc.mean(dim=(0, 2), keepdim=True)
    std = desc.std(dim=(0, 2), keepdim=True, unbiased=False).clamp_min(1e-8)
    return ((desc - mean) / std).reshape(desc.shape[0], DESCRIPTOR_DIM)


# ----------------------------------------------------------------------------------------------
# Sliced Wasserstein distance
# ----------------------------------------------------------------------------------------------

def _w1_rows_numpy(pa: np.ndarray, pb: np.ndarray) -> float:
    """Sum over rows of the mean absolute difference of the sorted rows; sorts in place.

    Row by row, so that the sort, the difference and the sum of one row stay in cache.
    """
    total = 0.0
    for x, y in zip(pa, pb):
        x.sort()
        y.sort()
        np.subtract(x, y, out=x)
        np.abs(x, out=x)
        total += float(x.sum())
    return total / pa.shape[1]


def _w1_sum(pa: torch.Tensor, pb: torch.Tensor, pool: ThreadPoolExecutor | None,
            n_threads: int) -> float:
    """Sum over R directions of the 1-D Wasserstein-1 distance between projected sets.

    Args:
        pa, pb: (R, N) contiguous projections of the two sets (same N); overwritten on the CPU.
        pool, n_threads: optional thread pool for the CPU path.

    Returns:
        ``sum_r mean_i |sort(pa[r])_i - sort(pb[r])_i|``.

    On the CPU, NumPy sorts (SIMD kernels, much faster than ``torch.sort`` there; the GIL is
    released) over row blocks in ``n_threads`` threads; elsewhere ``torch.sort``.
    """
    if pa.device.type != "cpu":
        pa = torch.sort(pa, dim=1).values
        pb = torch.sort(pb, dim=1).values
        return float(F.l1_loss(pa, pb, reduction="sum")) / pa.shape[1]
    a, b = pa.numpy(), pb.numpy()
    rows = a.shape[0]
    if pool is None or n_threads < 2 or rows < 2:
        return _w1_rows_numpy(a, b)
    bounds = np.linspace(0, rows, min(n_threads, rows) + 1).astype(int)
    parts = pool.map(lambda ij: _w1_rows_numpy(a[ij[0]:ij[1]], b[ij[0]:ij[1]]),
                     zip(bounds[:-1], bounds[1:]))
    return float(sum(parts))


def _sliced_w1(a: torch.Tensor, b: torch.Tensor, n_projections: int, n_repeats: int,
               gen: torch.Generator, pool: ThreadPoolExecutor | None = None,
               n_threads: int = 1) -> float:
    """Mean over ``n_repeats`` x ``n_projections`` random unit directions of the 1-D W1 distance.

    Args:
        a: (Na, D) normalised descriptors.
        b: (Nb, D) normalised descriptors.
        gen: CPU generator for directions and subsampling.
        pool, n_threads: optional thread pool for the CPU sorts.

    Returns:
        The SWD (not yet scaled by 1e3).
    """
    d = a.shape[1]
    chunk = max(1, min(n_projections, _SORT_CHUNK_ELEMS // max(1, min(len(a), len(b)))))
    total = 0.0
    for _ in range(n_repeats):
        dirs = torch.randn(n_projections, d, generator=gen)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        dirs = dirs.to(a.device)
        aa, bb = a, b
        if len(aa) != len(bb):
            n = min(len(aa), len(bb))
            keep = torch.randperm(max(len(aa), len(bb)), generator=gen)[:n].sort().values
            keep = keep.to(a.device)
            if len(aa) > n:
                aa = aa.index_select(0, keep)
            else:
                bb = bb.index_select(0, keep)
        for s in range(0, n_projections, chunk):
            dc = dirs[s:s + chunk]
            total += _w1_sum(dc @ aa.T, dc @ bb.T, pool, n_threads)  # (chunk, N) projections
    return total / (n_projections * n_repeats)


class SWDAccumulator:
    """Streaming SWD: add batches of real and fake images, then :meth:`compute`.

    Only the patch descriptors are kept (``patches_per_image * 147`` float32 values per image and
    pyramid level, on ``device``), never the images.

    Args:
        patches_per_image: random 7x7 neighbourhoods per image and level.
        n_projections: random directions per repeat.
        n_repeats: independent repeats (fresh directions) averaged together.
        min_res: smallest shorter side of a pyramid level (>= 7).
        seed: seeds patch positions and directions; results are deterministic given it.
        device: where the pyramids, descriptors and projections are computed.

    Example::

        acc = SWDAccumulator(seed=0)
        for real_batch, fake_batch in loader:   # each (B, 3, H, W) in [-1, 1]
            acc.add_real(real_batch)
            acc.add_fake(fake_batch)
        result = acc.compute()  # {"levels": [...], "resolutions": [...], "mean": ...}
    """

    def __init__(self, *, patches_per_image: int = 128, n_projections: int = 512,
                 n_repeats: int = 4, min_res: int = 16, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        for name, v in (("patches_per_image", patches_per_image), ("n_projections", n_projections),
                        ("n_repeats", n_repeats)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if min_res < PATCH_SIZE:
            raise ValueError(f"min_res must be >= {PATCH_SIZE} (the patch size), got {min_res}")
        self.patches_per_image = int(patches_per_image)
        self.n_projections = int(n_projections)
        self.n_repeats = int(n_repeats)
        self.min_res = int(min_res)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget all added images."""
        self._desc: dict[str, list[list[torch.Tensor]]] = {"real": [], "fake": []}
        self._count = {"real": 0, "fake": 0}
        self._size: dict[str, tuple[int, int] | None] = {"real": None, "fake": None}

    @property
    def num_real(self) -> int:
        """Number of real images added so far."""
        return self._count["real"]

    @property
    def num_fake(self) -> int:
        """Number of fake images added so far."""
        return self._count["fake"]

    def add_real(self, batch: Any) -> None:
        """Add a batch of real images: (B, 3, H, W) float in [-1, 1] or (B, H, W, 3) uint8."""
        self._add("real", batch)

    def add_fake(self, batch: Any) -> None:
        """Add a batch of generated images: (B, 3, H, W) float in [-1, 1] or (B, H, W, 3) uint8."""
        self._add("fake", batch)

    @torch.no_grad()
    def _add(self, which: str, batch: Any) -> None:
        x = to_float_images(batch, device=self.device)
        size = (int(x.shape[2]), int(x.shape[3]))
        other = "fake" if which == "real" else "real"
        if self._size[which] is not None and self._size[which] != size:
            raise ValueError(
                f"all {which} images must have the same size: got {size[0]}x{size[1]} after "
                f"{self._size[which][0]}x{self._size[which][1]}")
        if self._size[other] is not None and self._size[other] != size:
            raise ValueError(
                f"real and fake images must have the same size: {which} images are "
                f"{size[0]}x{size[1]}, {other} images are "
                f"{self._size[other][0]}x{self._size[other][1]}")
        n = x.shape[0]
        if n == 0:
            return
        levels = laplacian_pyramid(x, self.min_res)
        self._size[which] = size
        u = _patch_uniforms(self.seed, self._count[which], n, len(levels), self.patches_per_image)
        store = self._desc[which]
        if not store:
            store.extend([] for _ in levels)
        for k, lev in enumerate(levels):
            store[k].append(_extract(lev, u[:, k]))
        self._count[which] += n

    @torch.no_grad()
    def compute(self) -> dict:
        """SWD between everything added so far.

        Returns:
            ``{"levels": [float, ...], "resolutions": [int, ...], "mean": float}``: per-level SWD
            x 1e3 (finest level first), the shorter side of each level in pixels, and the
            average over levels.

        Raises:
            ValueError: if either set is empty.
        """
        for which in ("real", "fake"):
            if self._count[which] == 0:
                raise ValueError(f"no {which} images were added")
        h, w = self._size["real"]
        sizes = pyramid_sizes(h, w, self.min_res)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed)
        threads = max(1, torch.get_num_threads()) if self.device.type == "cpu" else 1
        values = []
        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        try:
            for k in range(len(sizes)):
                a = _normalise(torch.cat(self._desc["real"][k]))
                b = _normalise(torch.cat(self._desc["fake"][k]))
                values.append(1e3 * _sliced_w1(a, b, self.n_projections, self.n_repeats, gen,
                                               pool, threads))
                del a, b
        finally:
            if pool is not None:
                pool.shutdown()
        return {
            "levels": values,
            "resolutions": [min(s) for s in sizes],
            "mean": float(sum(values) / len(values)),
        }


def swd(real: Any, fake: Any, *, patches_per_image: int = 128, n_projections: int = 512,
        n_repeats: int = 4, min_res: int = 16, seed: int = 0,
        device: torch.device | str = "cpu") -> dict:
    """Sliced Wasserstein distance between two image sets (Karras et al. 2018, App. D).

    Args:
        real, fake: each either one batch holding the whole set — float (N, 3, H, W) in [-1, 1]
            or uint8 (N, H, W, 3), tensor or NumPy array — or an iterable of such batches (e.g.
            a generator, to stream large sets). Both sets must have the same H x W.
        patches_per_image: random 7x7x3 neighbourhoods per image and pyramid level.
        n_projections: random unit directions per repeat.
        n_repeats: repeats (fresh directions) averaged together.
        min_res: smallest shorter side of a pyramid level.
        seed: the result is deterministic given the seed (and the image order).
        device: "cpu", "cuda", ...

    Returns:
        ``{"levels": [float, ...], "resolutions": [int, ...], "mean": float}``: per-level SWD
        x 1e3, finest level first, the shorter side of each level, and the mean over levels.

    Raises:
        ValueError: sets of different image sizes, empty sets, malformed inputs.
    """
    acc = SWDAccumulator(patches_per_image=patches_per_image, n_projections=n_projections,
                         n_repeats=n_repeats, min_res=min_res, seed=seed, device=device)
    real_it, fake_it = _iter_batches(real), _iter_batches(fake)
    # Add the first batch of each set before streaming the rest, so that a size mismatch is
    # reported before any long computation.
    first_real, first_fake = next(real_it, None), next(fake_it, None)
    if first_real is not None:
        acc.add_real(first_real)
    if first_fake is not None:
        acc.add_fake(first_fake)
    for batch in real_it:
        acc.add_real(batch)
    for batch in fake_it:
        acc.add_fake(batch)
    return acc.compute()
