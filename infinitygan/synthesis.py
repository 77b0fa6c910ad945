"""Synthesis engine: regions -> tiles -> batches -> pixels.

A region is a rectangle (x, y, width, height) of the infinite pixel plane (any integers). It
is cut into tiles on the generator's lattice (2^K pixels, 16 for paper-101); each tile is
computed from its own zS window, whose margins come from ``Geometry`` (exact layer
arithmetic), with every latent, coordinate and noise value taken from the ``Canvas`` at its
global position. Tiles of equal size are stacked along the batch axis ("parallel batching").
Because nothing is padded and every input is a function of position, the pixels do not
depend on the tile size, the batch size or the region asked for.

Rows of tiles are yielded as horizontal bands as soon as they are complete, so writers can
stream images of any size in memory bounded by one row of tiles.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .coords import HORIZON_ROW, canvas_coords
from .errors import UserError
from .generator import Generator
from .geometry import ceil_div
from .latents import Canvas

#: the authors' inference scheme: 101-pixel patches (11 zS cells) every 96 pixels, one per forward
PAPER_PATCH_STEP = 96


@dataclass(frozen=True)
class Region:
    """Pixels [x, x + width) x [y, y + height) of the infinite image."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"region size must be positive, got {self.width}x{self.height}")


@dataclass(frozen=True)
class Tile:
    """One forward pass worth of pixels.

    (row_cell, col_cell): first zS cell of the window; (rows, cols): zS window size.
    (y0, y1, x0, x1): the region pixels it delivers; (oy, ox): their offset in the tile output.
    band: index of the row of tiles.
    """

    band: int
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


def default_tile_batch(device: torch.device) -> tuple[int, int]:
    """Tile size (pixels) and batch size that work well on the device kind."""
    if device.type == "cuda":
        return 1024, 2
    if device.type == "mps":
        return 512, 1
    return 512, 1


def horizon_centered_y(height: int) -> int:
    """y of a region of this height centred exactly on the horizon (pixel row 2)."""
    return 2 - height // 2


def centered_origin(width: int, height: int, lattice: int) -> tuple[int, int]:
    """(x, y) of a region centred on x = 0 and on the horizon (pixel row 2, see coords.HORIZON_ROW),
    snapped to the generator's lattice (at most lattice / 2 pixels off) so that default regions
    split into whole tiles."""
    x = lattice * round(-width / 2 / lattice)
    y = lattice * round((2 - height / 2) / lattice)
    return x, y


class Synthesizer:
    """Renders regions of canvases with a generator.

    generator: a ``Generator``; used as is when already on ``device`` in ``dtype``, else a converted
    copy is made (the caller's module is never cast). Eval mode.
    """

    def __init__(self, generator: Generator, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32):
        p = next(generator.parameters())
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype
        if p.dtype != dtype or p.device != self.device:
            # a converted copy: the caller's (float32) weights stay as they are
            generator = copy.deepcopy(generator).to(device=self.device, dtype=dtype)
        self.generator = generator.eval()
        self.geometry = generator.geometry
        self.cfg = generator.cfg

    # ---- planning --------------------------------------------------------------------------
    def tile_size(self, tile: int | None) -> int:
        L = self.geometry.lattice
        tile = default_tile_batch(self.device)[0] if tile is None else int(tile)
        if tile <= 0:
            raise UserError(f"tile size must be positive, got {tile}")
        return max(L, int(round(tile / L)) * L)

    def _axis(self, start: int, length: int, tile: int) -> tuple[list[tuple[int, int, int]], int]:
        """Cut [start, start + length) into equal lattice-aligned tiles [(first cell, p0, p1)] of size t.

        The aligned span is split into k = ceil(span / tile) tiles of equal size (so that every
        tile can share one batch) with as little overhang as the lattice allows.
        """
        L = self.geometry.lattice
        a0 = (start // L) * L
        span = ceil_div(start + length, L) * L - a0
        k = ceil_div(span, tile)
        t = ceil_div(ceil_div(span, k), L) * L
        out = []
        a = a0
        while a < start + length:
            out.append((a // L, max(a, start), min(a + t, start + length)))
            a += t
        return out, t

    def plan(self, region: Region, tile: int | None = None) -> list[Tile]:
        """Tiles covering the region, in row-major order; all share one window size."""
        # zero-padded baseline: not tileable, one forward for the region
        T = self.one_shot_tile(region) if self.geometry.padded else self.tile_size(tile)
        rows, th = self._axis(region.y, region.height, T)
        cols, tw = self._axis(region.x, region.width, T)
        L, extra = self.geometry.lattice, ceil_div(self.geometry.shrink, self.geometry.lattice)
        n_r, n_c = th // L + extra, tw // L + extra
        tiles = []
        for bi, (rc, y0, y1) in enumerate(rows):
            for cc, x0, x1 in cols:
                tiles.append(Tile(bi, rc, cc, n_r, n_c, y0, y1, x0, x1, y0 - rc * L, x0 - cc * L))
        return tiles

    def one_shot_tile(self, region: Region) -> int:
        """The tile size that covers the whole region in one tile (its lattice-aligned span)."""
        L = self.geometry.lattice
        return max(ceil_div(region.x + region.width, L) * L - (region.x // L) * L,
                   ceil_div(region.y + region.height, L) * L - (region.y // L) * L)

    def paper_plan(self, region: Region) -> list[Tile]:
        """The authors' scheme: 101-pixel patches (for paper-101) every 96 pixels."""
        step = PAPER_PATCH_STEP if self.geometry.lattice == 16 else self.geometry.lattice * 6
        return self.plan(region, step)

    # ---- inputs ----------------------------------------------------------------------------
    def _inputs(self, canvas: Canvas, tiles: list[Tile]):
        """zl (B, zl_dim, n + 2m, n' + 2m), coords (B, C, ...) and the 2K noise maps of each tile."""
        g, dev, dt = self.geometry, self.device, self.dtype
        m = g.gs_margin
        zl, coords = [], []
        for t in tiles:
            r0, c0 = t.row_cell - m, t.col_cell - m
            H, W = t.rows + 2 * m, t.cols + 2 * m
            zl.append(canvas.zl(r0, H, c0, W, device=dev, dtype=dt))
            coords.append(canvas_coords(self.cfg.coords, r0, H, c0, W, dtype=dt, device=dev))
        return torch.stack(zl), torch.stack(coords), self._noises(canvas, tiles)

    def _noises(self, canvas: Canvas, tiles: list[Tile]) -> list[torch.Tensor]:
        """The 2K noise maps (B, 1, h_j, w_j) of the tiles, from each layer's global lattice."""
        g = self.geometry
        noises: list[list[torch.Tensor]] = [[] for _ in range(2 * g.n_up)]
        for t in tiles:
            for j, ((ya, yb), (xa, xb)) in enumerate(zip(g.ts_ranges(t.row_cell, t.rows),
                                                          g.ts_ranges(t.col_cell, t.cols))):
                noises[j].append(canvas.noise(j, ya, yb - ya, xa, xb - xa, device=self.device, dtype=self.dtype))
        return [torch.stack(n) for n in noises]

    def band_structure(self, canvas: Canvas, row_cell: int, rows: int, col0: int, cols: int, zg: torch.Tensor,
                       chunk: int = 1024) -> torch.Tensor:
        """zS of cells [row_cell, +rows) x [col0, +cols) in one GS pass per column chunk: (1, C, rows, cols).

        Shared by all tiles of a band, so GS margins are computed once per band, not per tile.
        """
        m, dev, dt = self.geometry.gs_margin, self.device, self.dtype
        parts = []
        for a in range(col0, col0 + cols, chunk):
            w = min(chunk, col0 + cols - a)
            zl = canvas.zl(row_cell - m, rows + 2 * m, a - m, w + 2 * m, device=dev, dtype=dt)
            coords = canvas_coords(self.cfg.coords, row_cell - m, rows + 2 * m, a - m, w + 2 * m, dtype=dt, device=dev)
            parts.append(self.generator.structure(zg, zl[None], coords[None]))
        return torch.cat(parts, dim=-1)

    def styles(self, canvas: Canvas) -> tuple[torch.Tensor, torch.Tensor]:
        """(zg (1, zg_dim), W+ (1, n_styles, style_dim)) of a canvas."""
        zg = canvas.zg(device=self.device, dtype=self.dtype)
        return zg, self.generator.styles(zg)

    def forward_tiles(self, canvas: Canvas, tiles: list[Tile], zg=None, styles=None) -> torch.Tensor:
        """Full tile outputs (B, 3, P_rows, P_cols) for tiles sharing one window size."""
        if zg is None or styles is None:
            zg, styles = self.styles(canvas)
        zl, coords, noises = self._inputs(canvas, tiles)
        zs = self.generator.structure(zg, zl, coords)
        return self.generator.texture(zs, styles, noises)

    # ---- rendering -------------------------------------------------------------------------
    def bands(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
              progress: bool = False, tiles: list[Tile] | None = None,
              shared_structure: bool = True,
              styles: torch.Tensor | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row offset in the region, float32 band (h, width, 3)) top to bottom.

        Per band (row of tiles): GS runs once over the band's zl window, then GT runs on the
        tiles' zS windows, ``batch`` tiles per forward. With ``shared_structure=False`` every
        tile runs GS on its own window (the authors' patch-by-patch scheme). Values are the raw
        generator output (about [-1, 1] for a trained model, unclamped). ``styles``: optional W+
        override (1, n_styles, style_dim) of mapping(zg) for GT, as in ``render_tensor``.
        """
        batch = default_tile_batch(self.device)[1] if batch is None else int(batch)
        if batch <= 0:
            raise UserError(f"batch size must be positive, got {batch}")
        tiles = self.plan(region, tile) if tiles is None else tiles
        by_band: dict[int, list[Tile]] = {}
        for t in tiles:
            by_band.setdefault(t.band, []).append(t)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(tiles), unit="tile", desc="synthesis", leave=False)
        w_plus = styles
        with torch.inference_mode():
            zg, styles = self.styles(canvas)
            if w_plus is not None:
                styles = w_plus.to(device=self.device, dtype=self.dtype)
            for band in sorted(by_band):
                row = by_band[band]
                first = row[0]
                col0 = min(t.col_cell for t in row)
                cols = max(t.col_cell + t.cols for t in row) - col0
                if shared_structure:
                    zs_band = self.band_structure(canvas, first.row_cell, first.rows, col0, cols, zg)
                buf = np.empty((first.y1 - first.y0, region.width, 3), np.float32)
                for i in range(0, len(row), batch):
                    chunk = row[i:i + batch]
                    if shared_structure:
                        zs = torch.cat([zs_band[..., t.col_cell - col0: t.col_cell - col0 + t.cols] for t in chunk])
                        zs = zs.contiguous(memory_format=torch.channels_last)  # NHWC: faster convs
                        out = self.generator.texture(zs, styles, self._noises(canvas, chunk))
                    else:
                        out = self.forward_tiles(canvas, chunk, zg, styles)
                    out = out.float().cpu().numpy()
                    for t, img in zip(chunk, out):
                        piece = img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0]
                        buf[:, t.x0 - region.x: t.x1 - region.x] = piece.transpose(1, 2, 0)
                    if bar is not None:
                        bar.update(len(chunk))
                yield first.y0 - region.y, buf
        if bar is not None:
            bar.close()

    def render(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
               progress: bool = False, styles: torch.Tensor | None = None) -> np.ndarray:
        """The whole region as a float32 array (height, width, 3)."""
        out = np.empty((region.height, region.width, 3), np.float32)
        for y, band in self.bands(canvas, region, tile, batch, progress, styles=styles):
            out[y: y + band.shape[0]] = band
        return out

    def render_one_shot(self, canvas: Canvas, region: Region) -> np.ndarray:
        """One forward pass for the whole region (the tile = region special case)."""
        return self.render(canvas, region, tile=self.one_shot_tile(region), batch=1)

    def render_tensor(self, canvas: Canvas, region: Region, tile: int | None = None,
                      styles: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable rendering (B=1 tiles, autograd enabled): (3, height, width) on device.

        Gradients flow into every override tensor of the canvas (zg, zl, noises) and into
        ``styles``, an optional W+ override (1, n_styles, style_dim) of mapping(zg) for GT (GS
        still uses zg), for inversion.
        """
        tiles = self.plan(region, tile)
        zg, w = self.styles(canvas)
        if styles is not None:
            if styles.dim() != 3 or styles.shape[0] != 1 or styles.shape[1] != self.generator.n_styles:
                raise ValueError(f"styles must be (1, {self.generator.n_styles}, D), got {tuple(styles.shape)}")
            w = styles.to(device=self.device, dtype=self.dtype)
        rows = []
        for band in range(tiles[-1].band + 1):
            pieces = []
            for t in (t for t in tiles if t.band == band):
                img = self.forward_tiles(canvas, [t], zg, w)[0]
                pieces.append(img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0])
            rows.append(torch.cat(pieces, dim=2))
        return torch.cat(rows, dim=1)
