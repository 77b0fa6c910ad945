"""Volumetric styles of spatial style fusion (paper Appendix L, "fused modulation-demodulation").

A ``Fusion`` joins a style field (per-position weights of N styles) with each style's global
latent zg (N, zg_dim) and its W+ styles (N, n_styles, style_dim). For a window it returns:

* for GS: the raw zg per zl cell, sum_c w_c(cell) zg_c, as (1, zg_dim, H, W);
* for GT: per conv slot j, sum_c w_c(position) W+_c[j] at that conv's input lattice
  (1, style_dim, h_j, w_j), and likewise per ToRGB (slot ``rgb_slot(k)`` on its own lattice).

``ModulatedConv2d`` then modulates and demodulates per position. When every weight in the
window is one-hot for one style (the window is farther than the filter radius from every
transition), the window gets that style's shared vectors instead and takes the plain path.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .calibration import Calibration
from .field import StyleField


@dataclass
class GTStyles:
    """GT styles of a batch of windows: shared W+ (1, n_styles, D), or per-position lists."""

    shared: torch.Tensor | None = None
    convs: Sequence[torch.Tensor] | None = None
    rgbs: Sequence[torch.Tensor] | None = None


class _LazyMaps(Sequence):
    """A sequence whose items are built on access (and not kept)."""

    def __init__(self, fn, n: int):
        self.fn, self.n = fn, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice) or not -self.n <= i < self.n:
            raise IndexError(i)
        return self.fn(i % self.n)


class Fusion:
    """Style field + the styles of its labels, on a device.

    zg: (N, zg_dim) raw global latents; wplus: (N, n_styles, style_dim). Label c of the field
    indexes row c of both.
    """

    def __init__(self, field: StyleField, calibration: Calibration, zg: torch.Tensor, wplus: torch.Tensor,
                 rgb_slots: list[int]):
        self.field = field
        self.calib = calibration
        self.zg = zg
        self.wplus = wplus
        self.rgb_slots = rgb_slots

    # ---- single-style detection -------------------------------------------------------------
    def gs_label(self, row0: int, rows: int, col0: int, cols: int) -> int | None:
        """The single style of a zl window [row0, +rows) x [col0, +cols), or None when fused."""
        c = self.calib
        y0, y1 = c.pixel_span(0, row0, row0 + rows)
        x0, x1 = c.pixel_span(0, col0, col0 + cols)
        return self.field.single_label(y0, y1, x0, x1)

    def gt_label(self, s_row: int, n_rows: int, s_col: int, n_cols: int) -> int | None:
        """The single style of the GT pass over zS cells [s_row, +n_rows) x [s_col, +n_cols)."""
        return self.gs_label(s_row, n_rows, s_col, n_cols)  # every GT lattice lies in the zS span

    # ---- GS --------------------------------------------------------------------------------
    def gs_style(self, row0: int, rows: int, col0: int, cols: int) -> torch.Tensor:
        """zg for GS over zl cells [row0, +rows) x [col0, +cols): (1, zg_dim) or (1, zg_dim, rows, cols)."""
        lab = self.gs_label(row0, rows, col0, cols)
        if lab is not None:
            return self.zg[lab: lab + 1]
        c = self.calib
        ys, xs = c.pixels(0, row0, row0 + rows), c.pixels(0, col0, col0 + cols)
        win = self.field.window(int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1]))
        return self._blend(self.zg, win.present, win.weights(ys, xs))[None]

    def gs_styles(self, windows: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """Batched gs_style for windows of one size: (1, zg_dim) when all share one style, else
        (B, zg_dim, H, W)."""
        labels = [self.gs_label(*w) for w in windows]
        if labels[0] is not None and all(lab == labels[0] for lab in labels):
            return self.zg[labels[0]: labels[0] + 1]
        out = []
        for w, lab in zip(windows, labels):
            st = self.gs_style(*w) if lab is None else self.zg[lab].view(1, -1, 1, 1).expand(1, -1, w[1], w[3])
            out.append(st)
        return torch.cat(out)

    # ---- GT --------------------------------------------------------------------------------
    def gt_styles(self, windows: list[tuple[int, int, int, int]], device=None, dtype=None) -> GTStyles:
        """GT styles for zS windows (s_row, n_rows, s_col, n_cols) of one size.

        Per-position maps are built lazily, one layer at a time as GT asks for them (memory: one
        map of the batch, not all 3K of them)."""
        labels = [self.gt_label(*w) for w in windows]
        if labels[0] is not None and all(lab == labels[0] for lab in labels):
            return GTStyles(shared=self.wplus[labels[0]: labels[0] + 1])
        c = self.calib
        plans = []
        for (s_row, n_rows, s_col, n_cols), lab in zip(windows, labels):
            win = None
            if lab is None:
                y0, y1 = c.pixel_span(0, s_row, s_row + n_rows)
                x0, x1 = c.pixel_span(0, s_col, s_col + n_cols)
                win = self.field.window(y0, y1, x0, x1)
            plans.append((c.gt_ranges(s_row, n_rows), c.gt_ranges(s_col, n_cols), lab, win))
        n_convs, n_rgbs = len(plans[0][0][0]), len(plans[0][0][1])
        cache: dict = {}  # small: (N', h, w) float32 per lattice and window

        def build(kind: int, i: int) -> torch.Tensor:
            slot = i if kind == 0 else self.rgb_slots[i]
            out = []
            for rows, cols, lab, win in plans:
                rr, cr = rows[kind][i], cols[kind][i]
                if lab is not None:  # a one-style window in a fused batch: a constant map
                    m = self.wplus[lab, slot].view(1, -1, 1, 1).expand(1, -1, rr[2] - rr[1], cr[2] - cr[1])
                else:
                    key = (id(win), rr, cr)  # GT convs and ToRGBs share lattices: weights once each
                    if key not in cache:
                        cache[key] = win.weights(c.pixels(*rr), c.pixels(*cr))
                    m = self._blend(self.wplus[:, slot], win.present, cache[key])[None]
                out.append(m)
            return torch.cat(out).to(device=device, dtype=dtype)

        return GTStyles(convs=_LazyMaps(lambda i: build(0, i), n_convs),
                        rgbs=_LazyMaps(lambda i: build(1, i), n_rgbs))

    @staticmethod
    def _blend(vectors: torch.Tensor, present: list[int], weights: torch.Tensor) -> torch.Tensor:
        """sum_c weights[c] * vectors[present[c]]: (D, H, W) from vectors (N, D), weights (N', H, W)."""
        v = vectors[present]  # (N', D)
        w = weights.to(device=v.device, dtype=v.dtype)
        return torch.einsum("nd,nhw->dhw", v, w)


    # ---- the engine's hooks ----------------------------------------------------------------
    def structure(self, generator, zl: torch.Tensor, coords: torch.Tensor,
                  windows: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """GS with per-position zg: zl (B, zl_dim, n + 2m, n' + 2m) of zS windows
        (s_row, n_rows, s_col, n_cols) -> zS (B, C, n, n')."""
        m = generator.geometry.gs_margin
        zg = self.gs_styles([(r - m, n + 2 * m, c - m, k + 2 * m) for r, n, c, k in windows])
        return generator.structure(zg.to(device=zl.device, dtype=zl.dtype), zl, coords)

    def texture(self, generator, zs: torch.Tensor, noises, windows: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """GT with per-position W+ for zS windows (s_row, n_rows, s_col, n_cols): RGB (B, 3, P, P')."""
        st = self.gt_styles(windows, zs.device, zs.dtype)
        if st.shared is not None:
            return generator.texture(zs, st.shared.to(device=zs.device, dtype=zs.dtype), noises)
        return generator.texture(zs, st.convs, noises, rgb_styles=st.rgbs)


def fused_forward(generator, fusion: Fusion | None, zg: torch.Tensor, wplus: torch.Tensor,
                  zl: torch.Tensor, coords: torch.Tensor, noises, windows: list[tuple[int, int, int, int]]):
    """GS + GT for a batch of zS windows (s_row, n_rows, s_col, n_cols) of one size, GS per window.

    zl (B, zl_dim, n + 2m, n' + 2m), coords (B or 1, C, ...), noises: the 2K maps. Without a
    fusion this is the plain pass with zg (1, zg_dim), W+ (1, S, D). Returns RGB (B, 3, P, P').
    """
    if fusion is None:
        return generator.texture(generator.structure(zg, zl, coords), wplus, noises)
    return fusion.texture(generator, fusion.structure(generator, zl, coords, windows), noises, windows)
