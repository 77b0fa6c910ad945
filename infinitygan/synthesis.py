"""Synthesis engine: runs a render plan (``planning.RenderPlan``) of a canvas on a generator.

A region (``tiling.Region``) is cut into a lazy grid of equal tiles and units of work by the
torch-free planner (``planning.Planner``, this synthesizer's ``planner``: the tile from the memory
budget, GS chunks, batches); each tile is computed from its own zS window, whose margins come from
``Geometry`` (exact layer arithmetic), with every latent, coordinate and noise value taken from
the ``Canvas`` at its global position. Tiles of equal size are stacked along the batch axis
("parallel batching"). Because nothing is padded and every input is a function of position, the
pixels do not depend on the tile size, the batch size or the region asked for.

Streaming in both directions: tiles are planned on demand, GS runs once per unit of work
(neighbouring tiles of a row sharing its 12-cell margins) and every finished tile is handed on at
once (``Synthesizer.tiles``). Writers take tiles (TIFF, .npy) or rows of tiles (PNG), so memory is
bounded by a tile (a row of tiles for PNG, whose height the plan keeps small), not by the region.
"""
from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch

from .coords import HORIZON_ROW
from .generator import Generator
from .latents import Canvas
from .planning import Planner, RenderPlan, default_tile_batch
from .tiling import Region, Tile, TilePlan

__all__ = ["Planner", "Region", "RenderPlan", "Synthesizer", "Tile", "TilePlan", "centered_origin",
           "default_tile_batch", "horizon_centered_y"]


def horizon_centered_y(height: int) -> int:
    """y of a region of this height centred exactly on the horizon (pixel row HORIZON_ROW)."""
    return HORIZON_ROW - height // 2


def centered_origin(width: int, height: int, lattice: int) -> tuple[int, int]:
    """(x, y) of a region centred on x = 0 and on the horizon (pixel row HORIZON_ROW), snapped
    to the generator's lattice (at most lattice / 2 pixels off) so that default regions split
    into whole tiles."""
    x = lattice * round(-width / 2 / lattice)
    y = lattice * round((HORIZON_ROW - height / 2) / lattice)
    return x, y


def _window(t) -> tuple[int, int, int, int]:
    """zS window (row, rows, col, cols) of a tile (or the tuple itself)."""
    return t if isinstance(t, tuple) else (t.row_cell, t.rows, t.col_cell, t.cols)


class Synthesizer:
    """Runs render plans of canvases with a generator.

    generator: a ``Generator``; used as is when already on ``device`` in ``dtype``, else a converted
    copy is made (the caller's module is never cast). Eval mode. ``max_memory_mb``: working-memory
    budget of ``planner`` (default: 256 MB on CPU, a quarter of a CUDA device), which plans the
    renders (``planning.Planner``: the tile from the budget, GS chunks, units of work).
    """

    def __init__(self, generator: Generator, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, max_memory_mb: float | None = None):
        p = next(generator.parameters())
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype
        if p.dtype != dtype or p.device != self.device:
            # a converted copy: the caller's (float32) weights stay as they are
            generator = copy.deepcopy(generator).to(device=self.device, dtype=dtype)
        self.generator = generator.eval()
        self.geometry = generator.geometry
        self.cfg = generator.cfg
        limit = None  # the host's available memory
        if self.device.type == "cuda":
            limit = torch.cuda.get_device_properties(self.device).total_memory
            if max_memory_mb is None:
                max_memory_mb = limit / 4 / 2 ** 20
        self.planner = Planner(self.geometry, self.cfg, self.device.type, torch.finfo(dtype).bits // 8, max_memory_mb,
                               limit)

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
            coords.append(canvas.coords(self.cfg.coords, r0, H, c0, W, dtype=dt, device=dev))
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

    def structure_window(self, canvas: Canvas, row_cell: int, rows: int, col0: int, cols: int,
                         zg: torch.Tensor) -> torch.Tensor:
        """zS of cells [row_cell, +rows) x [col0, +cols) in one GS pass: (1, C, rows, cols).

        Shared by neighbouring tiles of a row, so GS margins are computed once per chunk.
        """
        m, dev, dt = self.geometry.gs_margin, self.device, self.dtype
        zl = canvas.zl(row_cell - m, rows + 2 * m, col0 - m, cols + 2 * m, device=dev, dtype=dt)
        coords = canvas.coords(self.cfg.coords, row_cell - m, rows + 2 * m, col0 - m, cols + 2 * m,
                               dtype=dt, device=dev)
        return self._structure(canvas, zg, zl[None], coords[None], [(row_cell, rows, col0, cols)])

    def styles(self, canvas: Canvas, w_plus: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(zg (1, zg_dim), W+ (1, n_styles, style_dim)) of a canvas; ``w_plus`` (1, n_styles,
        style_dim), when given, replaces mapping(zg) for GT (GS always uses zg)."""
        zg = canvas.zg(device=self.device, dtype=self.dtype)
        if w_plus is None:
            return zg, self.generator.styles(zg)
        if w_plus.dim() != 3 or w_plus.shape[0] != 1 or w_plus.shape[1] != self.generator.n_styles:
            raise ValueError(f"W+ styles must be (1, {self.generator.n_styles}, D), got {tuple(w_plus.shape)}")
        return zg, w_plus.to(device=self.device, dtype=self.dtype)

    def forward_tiles(self, canvas: Canvas, tiles: list[Tile], zg=None, styles=None) -> torch.Tensor:
        """Full tile outputs (B, 3, P_rows, P_cols) for tiles sharing one window size."""
        if zg is None or styles is None:
            zg, styles = self.styles(canvas)
        zl, coords, noises = self._inputs(canvas, tiles)
        zs = self._structure(canvas, zg, zl, coords, tiles)
        return self._texture(canvas, zs, styles, noises, tiles)

    def _structure(self, canvas: Canvas, zg, zl, coords, windows) -> torch.Tensor:
        """GS; per-position zg under a style fusion (windows: tiles, or zS (row, rows, col, cols))."""
        if canvas.fusion is None:
            return self.generator.structure(zg, zl, coords)
        return canvas.fusion.structure(self.generator, zl, coords, [_window(w) for w in windows])

    def _texture(self, canvas: Canvas, zs, styles, noises, tiles) -> torch.Tensor:
        """GT; per-position W+ under a style fusion (single-style tiles take the shared path)."""
        if canvas.fusion is None:
            return self.generator.texture(zs, styles, noises)
        return canvas.fusion.texture(self.generator, zs, noises, [_window(t) for t in tiles])

    # ---- rendering -------------------------------------------------------------------------
    def tiles(self, canvas: Canvas, plan: RenderPlan, progress: bool = False, styles: torch.Tensor | None = None,
              select=None) -> Iterator[tuple[Tile, np.ndarray]]:
        """Yield (tile, float32 pixels (y1 - y0, x1 - x0, 3)) for every tile of the plan, row-major.

        Per unit of work (``plan.units()``: neighbouring tiles of a row) GS runs once and GT on
        ``plan.batch`` tiles per forward; without ``plan.shared_structure`` every tile runs GS on
        its own window (the authors' patch-by-patch scheme). Values are the raw generator output
        (about [-1, 1] for a trained model, unclamped). ``styles``: optional W+ override
        (1, n_styles, style_dim) of mapping(zg) for GT (see ``styles``). ``select``: optional
        predicate on the index of a unit of work; only the units it accepts are computed
        (distributed synthesis shares them among processes).
        """
        batch, shared = plan.batch, plan.shared_structure
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(plan), unit="tile", desc="synthesis", leave=False)
        try:
            with torch.inference_mode():
                zg, styles = self.styles(canvas, styles)
                for g, group in enumerate(plan.unit_tiles()):
                    if select is not None and not select(g):
                        continue
                    if shared:
                        first, last = group[0], group[-1]
                        col0 = first.col_cell
                        zs_chunk = self.structure_window(canvas, first.row_cell, first.rows, col0,
                                                         last.col_cell + last.cols - col0, zg)
                    for k in range(0, len(group), batch):
                        part = group[k:k + batch]
                        if shared:
                            zs = torch.cat([zs_chunk[..., t.col_cell - col0: t.col_cell - col0 + t.cols]
                                            for t in part])
                            zs = zs.contiguous(memory_format=torch.channels_last)  # NHWC: faster convs
                            out = self._texture(canvas, zs, styles, self._noises(canvas, part), part)
                        else:
                            out = self.forward_tiles(canvas, part, zg, styles)
                        out = out.float().cpu().numpy()
                        for t, img in zip(part, out):
                            piece = img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0]
                            yield t, piece.transpose(1, 2, 0)
                        if bar is not None:
                            bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()

    def bands(self, canvas: Canvas, plan: RenderPlan, progress: bool = False,
              styles: torch.Tensor | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row offset in the region, float32 band (h, width, 3)), one row of tiles each."""
        region, buf = plan.region, None
        for t, piece in self.tiles(canvas, plan, progress, styles):
            if t.j == 0:
                buf = np.empty((t.y1 - t.y0, region.width, 3), np.float32)
            buf[:, t.x0 - region.x: t.x1 - region.x] = piece
            if t.j == plan.tiles.cols - 1:
                yield t.y0 - region.y, buf

    def render(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
               progress: bool = False, styles: torch.Tensor | None = None, plan: RenderPlan | None = None
               ) -> np.ndarray:
        """The whole region as a float32 array (height, width, 3): ``plan``, or the planner's plan of
        the region for ``tile`` and ``batch``."""
        plan = self.planner.plan(region, tile, batch) if plan is None else plan
        out = np.empty((region.height, region.width, 3), np.float32)
        for t, piece in self.tiles(canvas, plan, progress, styles):
            out[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] = piece
        return out

    def render_one_shot(self, canvas: Canvas, region: Region) -> np.ndarray:
        """One forward pass for the whole region (the tile = region special case)."""
        return self.render(canvas, region, plan=self.planner.render_plan(self.planner.one_shot_plan(region), 1))

    def render_tensor(self, canvas: Canvas, region: Region, tile: int | None = None,
                      styles: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable rendering (B=1 tiles, autograd enabled): (3, height, width) on device.

        Gradients flow into every override tensor of the canvas (zg, zl, noises) and into
        ``styles``, an optional W+ override (1, n_styles, style_dim) of mapping(zg) for GT (GS
        still uses zg), for inversion.
        """
        plan = self.planner.tile_plan(region, tile)
        zg, w = self.styles(canvas, styles)
        rows = []
        for i in range(plan.rows):
            pieces = []
            for t in plan.band(i):
                img = self.forward_tiles(canvas, [t], zg, w)[0]
                pieces.append(img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0])
            rows.append(torch.cat(pieces, dim=2))
        return torch.cat(rows, dim=1)
