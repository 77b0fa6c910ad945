"""The infinite canvas: every random input of an image as a pure function of (seed, position).

An image of InfinityGAN is defined by its seed. The global latent zg, the local latent zl at
every latent cell, and the noise of every GT layer at every position of that layer's lattice
are drawn from a counter-based hash of (seed, stream, channel, row, column): any region is
computed from its own neighbourhood, in O(region) memory, on any device, and the same
position always gets the same value, whichever tile asks for it. Positions are int64 and may
be negative or very far from the origin (the hash absorbs all 64 bits of each coordinate).

The hash works on 32-bit words held in int64 tensors with multipliers below 2^31, so every
product stays below 2^63: exact integer arithmetic on CPU, CUDA and MPS. Two hashes per value
feed a Box-Muller transform (24-bit uniforms, float32) for N(0, 1) samples.

Overrides: any part of zl, of any noise layer, or zg itself can be replaced by given tensors
(e.g. latents recovered by GAN inversion); gradients flow into those tensors.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from .errors import UserError, check_int

M32 = 0xFFFFFFFF
_C1 = 0x7FEB352D
_C2 = 0x21F0AAAD


def _mix(h: torch.Tensor | int) -> torch.Tensor | int:
    """A 32-bit integer finalizer (xorshift-multiply); h in [0, 2^32)."""
    h = h ^ (h >> 16)
    h = (h * _C1) & M32
    h = h ^ (h >> 15)
    h = (h * _C2) & M32
    h = h ^ (h >> 16)
    return h


def _absorb(h, word):
    return _mix((h ^ word) & M32)


def _absorb64(h, v):
    """Absorb a signed 64-bit value (tensor or int) as two 32-bit words."""
    if isinstance(v, torch.Tensor):
        lo = v & M32
        hi = (v >> 32) & M32
    else:
        v &= (1 << 64) - 1
        lo, hi = v & M32, v >> 32
    return _absorb(_absorb(h, lo), hi)


def stream_key(seed: int, stream: str) -> int:
    """A 32-bit key for (seed, stream name); seeds may be any Python int."""
    digest = hashlib.blake2b(f"{int(seed)}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & M32


#: seeds of the two 32-bit hash lanes (see ``gaussian_field``)
_LANE_A, _LANE_B = 0x3C6EF372, 0x6A09E667
_COL_A, _COL_B = 0x510E527F, 0x1F83D9AB


def gaussian_field(key: int, channels: int, rows: torch.Tensor, cols: torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) values at every (channel, row, col) of a separable grid.

    rows: (H,) int64 positions, cols: (W,) int64 positions (any device). Returns (C, H, W).
    The value at a position depends only on (key, channel, row, col).

    Every coordinate goes through the finalizer together with the others, on a 64-bit state:
    two independent 32-bit lanes absorb (key, channel, row) and two more the column, and each
    value is ``mix(mix(a_cr ^ a_col) ^ b_cr ^ b_col)``. Two (channel, row) keys, or two
    columns, would have to collide on both lanes (2^-64 per pair) to repeat a whole row or
    column of values; single values collide at the 2^-32 rate of any 32-bit draw.
    """
    dev = rows.device
    c = torch.arange(channels, dtype=torch.int64, device=dev)
    rows, cols = rows.to(torch.int64), cols.to(torch.int64)
    lanes = []
    for seed in (_LANE_A, _LANE_B):
        hc = _absorb(torch.full_like(c, _mix(key ^ seed)), c)  # (C,)
        lanes.append(_absorb64(hc.view(-1, 1), rows.view(1, -1)).unsqueeze(-1))  # (C, H, 1)
    qa = _absorb64(torch.full_like(cols, _COL_A), cols).view(1, 1, -1)  # (1, 1, W)
    qb = _absorb64(torch.full_like(cols, _COL_B), cols).view(1, 1, -1)
    h1 = _mix(_mix(lanes[0] ^ qa) ^ lanes[1] ^ qb)  # (C, H, W); xor of 32-bit words stays 32-bit
    h2 = _mix(h1 ^ 0x5BD1E995)
    # Box-Muller on 24-bit uniforms (exact in float32): u1 in (0, 1), u2 in [0, 1)
    u1 = ((h1 >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)
    u2 = (h2 >> 8).to(torch.float32) * (1.0 / 16777216.0)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype)


@dataclass
class Override:
    """A rectangle of given values pasted over a hashed field. values: (C, h, w)."""

    row0: int
    col0: int
    values: torch.Tensor


def _paste(field_: torch.Tensor, row0: int, col0: int, overrides: list[Override]) -> torch.Tensor:
    """Paste overrides intersecting the window [row0, row0 + H) x [col0, col0 + W) of field_."""
    H, W = field_.shape[-2:]
    out = field_
    for ov in overrides:
        h, w = ov.values.shape[-2:]
        r0, r1 = max(row0, ov.row0), min(row0 + H, ov.row0 + h)
        c0, c1 = max(col0, ov.col0), min(col0 + W, ov.col0 + w)
        if r0 >= r1 or c0 >= c1:
            continue
        if out is field_:
            out = field_.clone()
        vals = ov.values[..., r0 - ov.row0: r1 - ov.row0, c0 - ov.col0: c1 - ov.col0]
        out[..., r0 - row0: r1 - row0, c0 - col0: c1 - col0] = vals.to(out.dtype)
    return out


@dataclass(frozen=True)
class Reseed:
    """A region whose zl and noise are those of another ``seed`` (regional resampling).

    ranges[l] = (row0, row1, col0, col1): the region's half-open index ranges on lattice level
    l (0: latent cells, zl; l >= 1: the output lattice of GT convs 2l - 2 and 2l - 1).
    """

    seed: int
    ranges: tuple[tuple[int, int, int, int], ...]


def noise_level(layer: int) -> int:
    """Lattice level of the noise of GT conv ``layer`` (two convs per upsampling stage)."""
    return layer // 2 + 1


@dataclass
class Canvas:
    """All random inputs of one infinite image.

    seed: the image's seed. zg_dim / zl_dim: latent sizes of the model. Optional overrides:
    ``global_latent`` (zg_dim,), ``local_overrides`` (rectangles of zl, cell lattice) and
    ``noise_overrides[layer]`` (rectangles of one GT layer's noise, that layer's lattice).

    Steering (``infinitygan.scene``): ``period`` makes every input periodic in x with that many
    latent cells (2^l times as many positions on lattice level l, coordinates included; see
    ``coords``); ``reseeds`` take zl and noise of regions from other seeds. With neither, the
    values are those of the plain hash. ``fusion``: the styles of spatial style fusion (an
    ``infinitygan.scene.Fusion``, asked by the synthesizer for the styles of each window);
    None: ``zg`` everywhere.
    """

    seed: int
    zg_dim: int
    zl_dim: int
    global_latent: torch.Tensor | None = None
    local_overrides: list[Override] = field(default_factory=list)
    noise_overrides: dict[int, list[Override]] = field(default_factory=dict)
    period: int | None = None
    reseeds: list[Reseed] = field(default_factory=list)
    fusion: object | None = None

    def zg(self, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """The global latent, (1, zg_dim)."""
        if self.global_latent is not None:
            return self.global_latent.reshape(1, self.zg_dim).to(device=device, dtype=dtype)
        key = stream_key(self.seed, "zg")
        zero = torch.zeros(1, dtype=torch.int64, device=device)
        return gaussian_field(key, self.zg_dim, zero, zero, dtype).reshape(1, self.zg_dim)

    def zl(self, row0: int, rows: int, col0: int, cols: int, device="cpu",
           dtype=torch.float32) -> torch.Tensor:
        """Local latents of cells [row0, row0 + rows) x [col0, col0 + cols): (zl_dim, rows, cols)."""
        out = self._field("zl", 0, self.zl_dim, row0, rows, col0, cols, device, dtype)
        return _paste(out, row0, col0, self.local_overrides)

    def noise(self, layer: int, row0: int, rows: int, col0: int, cols: int, device="cpu",
              dtype=torch.float32) -> torch.Tensor:
        """Noise of GT conv ``layer`` on its own lattice: (1, rows, cols)."""
        out = self._field(f"noise{layer}", noise_level(layer), 1, row0, rows, col0, cols, device, dtype)
        return _paste(out, row0, col0, self.noise_overrides.get(layer, []))

    def _field(self, stream: str, level: int, channels: int, row0: int, rows: int, col0: int, cols: int,
               device, dtype) -> torch.Tensor:
        """Hashed values of a stream on lattice ``level``, with the period and reseeds applied."""
        r = torch.arange(rows, dtype=torch.int64, device=device) + row0
        q = torch.arange(cols, dtype=torch.int64, device=device) + col0
        per = None if self.period is None else self.period * 2 ** level
        if per is not None:
            q = torch.remainder(q, per)
        out = gaussian_field(stream_key(self.seed, stream), channels, r, q, dtype)
        for rs in self.reseeds:
            a, b, c, d = rs.ranges[level]
            rm = (r >= a) & (r < b)
            cm = (torch.remainder(q - c, per) < d - c) if per is not None else (q >= c) & (q < d)
            if not (bool(rm.any()) and bool(cm.any())):
                continue
            ri, ci = torch.nonzero(rm).flatten(), torch.nonzero(cm).flatten()
            out[:, ri[:, None], ci[None, :]] = gaussian_field(stream_key(rs.seed, stream), channels, r[ri], q[ci], dtype)
        return out

    def coords(self, cfg, row0: int, rows: int, col0: int, cols: int, device="cpu",
               dtype=torch.float32) -> torch.Tensor:
        """Coordinates of latent cells [row0, +rows) x [col0, +cols): (C, rows, cols).

        With a ``period`` that is a multiple of the model's horizontal coordinate period the
        coordinates are the plain ones (natively periodic). Otherwise the horizontal phase
        makes m = max(1, round(period / cfg.period)) whole turns per period: the coordinate
        period is rescaled to period / m cells (within a factor 4/3 of the trained one from
        period >= 1.5 cfg.period on; shorter panoramas make one turn, faster than trained).
        """
        from .coords import canvas_coords, cyclic_coords

        if self.period is None or cfg.system == "object" or self.period % cfg.period == 0:
            return canvas_coords(cfg, row0, rows, col0, cols, dtype=dtype, device=device)
        return cyclic_coords(cfg, self.period, row0, rows, col0, cols, dtype=dtype, device=device)

    def override_zl(self, row0: int, col0: int, values) -> None:
        """Replace zl at cells [row0, row0 + h) x [col0, col0 + w) by values (zl_dim, h, w).

        ``values``: a tensor (gradients flow into it) or anything ``torch.as_tensor`` takes.
        """
        values = _override_values("zl override", values)
        if values.dim() != 3 or values.shape[0] != self.zl_dim or 0 in values.shape:
            raise UserError(f"zl override must be ({self.zl_dim}, h, w), got {tuple(values.shape)}")
        self.local_overrides.append(Override(check_int("row0", row0), check_int("col0", col0), values))

    def override_noise(self, layer: int, row0: int, col0: int, values) -> None:
        """Replace the noise of GT conv ``layer`` at [row0, +h) x [col0, +w) by values (1, h, w) or (h, w)."""
        values = _override_values("noise override", values)
        if values.dim() == 2:
            values = values.unsqueeze(0)
        if values.dim() != 3 or values.shape[0] != 1 or 0 in values.shape:
            raise UserError(f"noise override must be (1, h, w) or (h, w), got {tuple(values.shape)}")
        layer, row0, col0 = check_int("layer", layer, 0), check_int("row0", row0), check_int("col0", col0)
        self.noise_overrides.setdefault(layer, []).append(Override(row0, col0, values))


def _override_values(what: str, values) -> torch.Tensor:
    """An override as a floating tensor: tensors kept as they are (autograd), arrays converted."""
    if not isinstance(values, torch.Tensor):
        try:
            values = torch.as_tensor(values, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"{what}: expected a tensor or an array of numbers, got {type(values).__name__}") from e
    if not values.is_floating_point():
        values = values.float()
    # finiteness is checked where it is free: not on tensors being optimised (inversion re-adds
    # its overrides every step) nor on accelerators (a device sync per override)
    if values.device.type == "cpu" and not values.requires_grad and not bool(torch.isfinite(values).all()):
        raise UserError(f"{what}: values must be finite")
    return values
