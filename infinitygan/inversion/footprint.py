"""Which canvas values an image region reads: its footprint on every lattice.

A region of pixels [x, x + W) x [y, y + H) is produced by the smallest zS window (s, n) per axis
(``Geometry.zs_window``); GS reads zl cells [s - m, s + n + m) (m = ``gs_margin``) and GT conv j
reads its noise at ``Geometry.ts_ranges(s, n)[j]``. Nothing else enters those pixels except zg
and the W+ styles, so a latents file holding these windows reproduces the region exactly,
whatever the seed of the canvas around it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..geometry import Geometry
from ..tiling import Region


@dataclass(frozen=True)
class Window:
    """Rows [row0, row0 + rows) x columns [col0, col0 + cols) of one lattice."""

    row0: int
    col0: int
    rows: int
    cols: int


@dataclass(frozen=True)
class Footprint:
    """zl window (latent-cell lattice) and one noise window per GT conv (that conv's lattice)."""

    zl: Window
    noise: tuple[Window, ...]


def footprint(geometry: Geometry, region: Region) -> Footprint:
    """Every canvas position the pixels of ``region`` depend on."""
    if getattr(geometry, "padded", False):
        raise ValueError("the zero-padded baseline is not tileable: its pixels depend on the whole window")
    sr, nr = geometry.zs_window(region.y, region.y + region.height)
    sc, nc = geometry.zs_window(region.x, region.x + region.width)
    m = geometry.gs_margin
    zl = Window(sr - m, sc - m, nr + 2 * m, nc + 2 * m)
    noise = tuple(Window(ya, xa, yb - ya, xb - xa)
                  for (ya, yb), (xa, xb) in zip(geometry.ts_ranges(sr, nr), geometry.ts_ranges(sc, nc)))
    return Footprint(zl, noise)
