"""Fusion map calibration (paper Appendix L): where every layer's positions sit in pixel space.

The paper propagates the pixel-space fusion map backwards through the generator, "padding or
interpolating" it so that each layer's map stays geometrically aligned with the image. With
the exact lattice arithmetic of ``Geometry`` no resizing is needed: every position of every
layer has an exact pixel position, and its map value is the pixel-space fusion weight there.

Levels: level 0 is the latent-cell lattice (zl, the coordinates, GS layers and zS); level l is
the lattice after l upsampling convs (the output of GT convs 2l - 2 and 2l - 1), level K the
output pixels. An upsampling conv puts its input i at output 2 i + 1 (the centre of the
transposed 3x3 footprint 2i..2i+2, kept by the centred blur); a 3x3 conv and every GS layer
keep positions (input i at output i). So index i of level l sits at global output index
2^(K-l) i + 2^(K-l) - 1, i.e. at pixel ``2^(K-l) i + 2^(K-l) - 1 - 3 (2^K - 1)``
(zl cell c at pixel 16 c - 30 for K = 4). Sampling the (infinite, pure) pixel map at those
positions is the calibration: a "backwards" copy that is exact, translation-equivariant, and
the same whichever tile asks.

Which maps a zS window (cells [s, s + n) per axis) needs:

* GS: the zl window [s - m, s + n + m) (level 0; each GS conv crops it centrally);
* GT conv 0: zS [s, s + n) (level 0); GT conv j >= 1: the output range of conv j - 1;
* ToRGB k: the output range of conv 2 k + 1 (level k + 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import Geometry


@dataclass(frozen=True)
class Calibration:
    """The per-layer map geometry of a generator."""

    geometry: Geometry

    def pixels(self, level: int, start: int, stop: int) -> torch.Tensor:
        """Pixel positions (int64, (stop - start,)) of indices [start, stop) of lattice ``level``."""
        K = self.geometry.n_up
        s = 2 ** (K - level)
        return torch.arange(start, stop, dtype=torch.int64) * s + (s - 1 - self.geometry.pixel_offset)

    def pixel_of(self, level: int, index: int) -> int:
        K = self.geometry.n_up
        s = 2 ** (K - level)
        return s * index + s - 1 - self.geometry.pixel_offset

    def index_range(self, level: int, p0: int, p1: int) -> tuple[int, int]:
        """Indices [i0, i1) of lattice ``level`` whose pixel position lies in [p0, p1)."""
        K = self.geometry.n_up
        s = 2 ** (K - level)
        b = s - 1 - self.geometry.pixel_offset
        return -((b - p0) // s), -((b - p1) // s)

    # ---- the lattices of one window -------------------------------------------------------------
    def gs_range(self, s: int, n: int) -> tuple[int, int]:
        """zl cells (level 0) that GS reads for zS cells [s, s + n)."""
        m = self.geometry.gs_margin
        return s - m, s + n + m

    def gt_ranges(self, s: int, n: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(level, start, stop) of every GT conv's input, then of every ToRGB's input."""
        out = self.geometry.ts_ranges(s, n)
        convs = [(0, s, s + n)]
        for j in range(1, len(out)):
            a, b = out[j - 1]
            convs.append(((j - 1) // 2 + 1, a, b))
        rgbs = [(k + 1, *out[2 * k + 1]) for k in range(self.geometry.n_up)]
        return convs, rgbs

    def pixel_span(self, level: int, start: int, stop: int) -> tuple[int, int]:
        """Inclusive pixel span [first, last] of indices [start, stop) of a lattice."""
        return self.pixel_of(level, start), self.pixel_of(level, stop - 1)
