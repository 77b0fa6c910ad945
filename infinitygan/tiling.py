"""Regions and tile plans: how a pixel rectangle of the infinite image is cut into forward passes.

A region is a rectangle (x, y, width, height) of the infinite pixel plane. A plan cuts it, in
the region's own frame, into ``rows x cols`` tiles of ``tile_height x tile_width`` pixels (the
last row and column are cropped to the region). Each tile is produced by one zS window whose
first cell and size come from the generator's exact layer arithmetic (``Geometry``); all
windows of a plan have the same size, so tiles can share a batch. Because the tile grid starts
at the region's corner, a tile of the plan is also a tile of a tiled TIFF of the region.

Plans are lazy: a tile is computed from its (row, column) index on demand, so a plan of a
region 10^9 pixels wide costs nothing until it is iterated, and iterating holds one tile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from .errors import UserError, check_int
from .geometry import ceil_div

#: largest supported side of a region (PNG and TIFF store sizes in 32 bits)
MAX_SIDE = 2 ** 31 - 1
#: largest supported |pixel position|: every layer's lattice index stays far inside int64
MAX_POSITION = 2 ** 60


@dataclass(frozen=True)
class Region:
    """Pixels [x, x + width) x [y, y + height) of the infinite image."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self):
        for name in ("x", "y", "width", "height"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"region size must be positive, got {self.width}x{self.height}")
        if self.width > MAX_SIDE or self.height > MAX_SIDE:
            raise UserError(f"region {self.width}x{self.height} exceeds the maximum side of {MAX_SIDE:,} pixels")
        for a, b, axis in ((self.x, self.x + self.width, "x"), (self.y, self.y + self.height, "y")):
            if max(abs(a), abs(b)) > MAX_POSITION:
                raise UserError(f"{axis} positions must stay within +-2^60 (= {MAX_POSITION:,}), got [{a}, {b})")

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Tile:
    """One forward pass worth of pixels.

    (i, j): row and column of the tile in its plan. (row_cell, col_cell): first zS cell of the
    window; (rows, cols): zS window size. (y0, y1, x0, x1): the region pixels it delivers
    (global frame); (oy, ox): their offset in the tile's output.
    """

    i: int
    j: int
    row_cell: int
    col_cell: int
    rows: int
    cols: int
    y0: int
    y1: int
    x0: int
    x1: int
    oy: int
    ox: int

    @property
    def band(self) -> int:  # the row of tiles (kept for callers that group by band)
        return self.i


@dataclass(frozen=True)
class Axis:
    """One axis of a plan: [start, start + length) cut into ``count`` tiles of ``size`` pixels,
    each read from a window of ``cells`` zS cells starting at cell floor(p0 / lattice)."""

    start: int
    length: int
    size: int
    count: int
    cells: int
    lattice: int

    @classmethod
    def make(cls, start: int, length: int, tile: int, geometry, unit: int, exact: bool = False) -> "Axis":
        """Split into k = ceil(length / tile) equal tiles (a multiple of ``unit`` pixels), the
        smallest that cover the axis; with ``exact``, tiles of exactly ``tile`` pixels."""
        L = geometry.lattice
        if exact:
            size = tile
        else:
            k = ceil_div(length, tile)
            size = ceil_div(ceil_div(length, k), unit) * unit
        k = ceil_div(length, size)
        offset = start % L  # the same for every tile: size is a multiple of L
        cells = ceil_div(offset + size + geometry.shrink, L)
        return cls(start, length, size, k, cells, L)

    def span(self, k: int) -> tuple[int, int, int]:
        """(first cell, p0, p1) of tile k."""
        p0 = self.start + k * self.size
        return p0 // self.lattice, p0, min(p0 + self.size, self.start + self.length)


@dataclass(frozen=True)
class TilePlan:
    """A lazy row-major grid of tiles covering a region (see the module docstring)."""

    region: Region
    ay: Axis
    ax: Axis

    @property
    def rows(self) -> int:
        return self.ay.count

    @property
    def cols(self) -> int:
        return self.ax.count

    @property
    def tile_height(self) -> int:
        return self.ay.size

    @property
    def tile_width(self) -> int:
        return self.ax.size

    @property
    def window(self) -> tuple[int, int]:
        """zS cells (rows, cols) of every tile's window."""
        return self.ay.cells, self.ax.cells

    def __len__(self) -> int:
        return self.rows * self.cols

    def tile(self, i: int, j: int) -> Tile:
        rc, y0, y1 = self.ay.span(i)
        cc, x0, x1 = self.ax.span(j)
        L = self.ay.lattice
        return Tile(i, j, rc, cc, self.ay.cells, self.ax.cells, y0, y1, x0, x1, y0 - rc * L, x0 - cc * L)

    def band(self, i: int, start: int = 0, stop: int | None = None) -> Iterator[Tile]:
        for j in range(start, self.cols if stop is None else stop):
            yield self.tile(i, j)

    def __iter__(self) -> Iterator[Tile]:
        for i in range(self.rows):
            yield from self.band(i)


def plan_region(region: Region, geometry, tile_height: int, tile_width: int, unit: int,
                exact: bool = False) -> TilePlan:
    return TilePlan(region, Axis.make(region.y, region.height, tile_height, geometry, unit, exact),
                    Axis.make(region.x, region.width, tile_width, geometry, unit, exact))


def tile_unit(geometry) -> int:
    """Tile sizes are multiples of the generator's lattice and of 16 (TIFF tiles need 16)."""
    L = geometry.lattice
    return L * 16 // math.gcd(L, 16)
