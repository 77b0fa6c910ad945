"""Synthesis engine: regions -> lazy tile plans -> batches -> finished tiles.

A region (``tiling.Region``) is cut into a lazy grid of equal tiles (``tiling.TilePlan``);
each tile is computed from its own zS window, whose margins come from ``Geometry`` (exact layer
arithmetic), with every latent, coordinate and noise value taken from the ``Canvas`` at its
global position. Tiles of equal size are stacked along the batch axis ("parallel batching").
Because nothing is padded and every input is a function of position, the pixels do not
depend on the tile size, the batch size or the region asked for.

Streaming in both directions: tiles are planned on demand, GS runs once per chunk of
neighbouring tiles of a row (sharing its 12-cell margins) over a window bounded by the memory
budget, and every finished tile is handed on at once (``Synthesizer.tiles``). Writers take
tiles (TIFF, .npy) or rows of tiles (PNG), so memory is bounded by a tile (a row of tiles for
PNG, whose height is chosen to keep that row small), not by the region.

The default tile is the largest (up to 512 pixels on CPU, 1024 on CUDA) whose estimated working
memory (``working_bytes``: the largest input + intermediate + output of a GT layer for a batch
of windows, plus GS's chunk) fits ``max_memory_mb`` (CPU default 256 MB; CUDA: a quarter of the
device's memory). The estimate is a lower bound: measured on CPU for paper-101, the process's
peak above the loaded model is about 1.8x it (the allocator's workspace and fragmentation), so
the CPU default leaves paper-101 at 1024^2 at about 830 MB peak RSS with a CPU build of torch
(docs/benchmarks.md).
"""
from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch

from .coords import HORIZON_ROW
from .errors import UserError, check_int
from .generator import Generator
from .latents import Canvas
from .tiling import Region, Tile, TilePlan, plan_region, tile_unit

__all__ = ["Region", "Synthesizer", "Tile", "TilePlan", "centered_origin", "default_tile_batch",
           "horizon_centered_y"]

#: the authors' inference scheme: 101-pixel patches (11 zS cells) every 96 pixels, one per forward
PAPER_PATCH_STEP = 96
#: working-memory budget of the engine when none is given (MB); CUDA: a quarter of the device
DEFAULT_MAX_MEMORY_MB = {"cpu": 256.0, "mps": 1024.0}
#: widest GS chunk (zS cells) of a row of tiles
MAX_GS_CHUNK = 1024


def default_tile_batch(device: torch.device) -> tuple[int, int]:
    """Largest tile size (pixels) and batch size for the device kind (before the memory budget)."""
    if device.type == "cuda":
        return 1024, 2
    return 512, 1


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
    """Renders regions of canvases with a generator.

    generator: a ``Generator``; used as is when already on ``device`` in ``dtype``, else a converted
    copy is made (the caller's module is never cast). Eval mode. ``max_memory_mb``: working-memory
    budget that chooses the default tile (see the module docstring).
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
        if max_memory_mb is not None and not max_memory_mb > 0:
            raise UserError(f"the memory budget must be positive, got {max_memory_mb} MB")
        self.max_memory_mb = max_memory_mb if max_memory_mb is not None else self._default_budget_mb()

    def _default_budget_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.get_device_properties(self.device).total_memory / 4 / 2 ** 20
        return DEFAULT_MAX_MEMORY_MB.get(self.device.type, DEFAULT_MAX_MEMORY_MB["cpu"])

    # ---- planning --------------------------------------------------------------------------
    @property
    def unit(self) -> int:
        """Tile sizes are multiples of this (the lattice, and 16 for TIFF tiles)."""
        return tile_unit(self.geometry)

    def tile_size(self, tile: int | None, batch: int = 1) -> int:
        """A requested tile size rounded to the unit, or the default from the memory budget."""
        if tile is None:
            return self.auto_tile(batch)
        tile = check_int("tile size", tile, 1)
        return max(self.unit, int(round(tile / self.unit)) * self.unit)

    def batch_size(self, batch: int | None) -> int:
        return default_tile_batch(self.device)[1] if batch is None else check_int("batch size", batch, 1)

    def working_bytes(self, rows: int, cols: int, batch: int = 1) -> int:
        """Estimated peak working memory of GT on ``batch`` windows of rows x cols zS cells:
        the largest (input + intermediate + output) of any GT layer, in this dtype."""
        g, cfg = self.geometry, self.cfg
        item = torch.finfo(self.dtype).bits // 8
        sizes = list(zip(g.ts_sizes(rows), g.ts_sizes(cols)))
        chans = cfg.ts_channels
        h, w, c_in = rows, cols, cfg.gs_channels
        peak = 0
        for j, ((ho, wo), c) in enumerate(zip(sizes, chans)):
            tmp = c * (2 * h - 1) * (2 * w - 1) if j % 2 == 0 and not g.padded else 0  # transposed conv
            peak = max(peak, c_in * h * w + tmp + c * ho * wo)
            h, w, c_in = ho, wo, c
        return batch * peak * item

    def auto_tile(self, batch: int = 1) -> int:
        """The largest tile (<= the device's default) whose working memory fits the budget."""
        budget = self.max_memory_mb * 2 ** 20
        L, shrink = self.geometry.lattice, self.geometry.shrink
        t = max(self.unit, default_tile_batch(self.device)[0] // self.unit * self.unit)
        while t > self.unit:
            n = -(-(t + shrink) // L)
            if self.working_bytes(n, n, batch) <= budget:
                break
            t -= self.unit
        return t

    def plan(self, region: Region, tile: int | None = None, tile_height: int | None = None,
             batch: int | None = None) -> TilePlan:
        """A lazy row-major grid of equal tiles covering the region (tile_height: rows of tiles
        of another height, e.g. short rows for PNG at large widths)."""
        if self.geometry.padded:  # zero-padded baseline: not tileable, one forward for the region
            return self.one_shot_plan(region)
        t = self.tile_size(tile, self.batch_size(batch))
        th = t if tile_height is None else min(t, self.tile_size(tile_height))
        return plan_region(region, self.geometry, th, t, self.unit)

    def one_shot_plan(self, region: Region) -> TilePlan:
        """One tile covering the whole region."""
        u = self.unit
        return plan_region(region, self.geometry, -(-region.height // u) * u, -(-region.width // u) * u, u)

    def one_shot_tile(self, region: Region) -> int:
        """A tile size that covers the whole region in one tile."""
        return max(self.one_shot_plan(region).tile_height, self.one_shot_plan(region).tile_width)

    def paper_plan(self, region: Region) -> TilePlan:
        """The authors' scheme: 101-pixel patches (for paper-101) every 96 pixels."""
        step = PAPER_PATCH_STEP if self.geometry.lattice == 16 else self.geometry.lattice * 6
        return plan_region(region, self.geometry, step, step, self.geometry.lattice, exact=True)

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

    def gs_chunk_tiles(self, plan: TilePlan, batch: int) -> int:
        """How many neighbouring tiles of a row share one GS pass: as many as fit MAX_GS_CHUNK
        cells and the memory budget (at least ``batch``)."""
        g, cfg = self.geometry, self.cfg
        rows, cols = plan.window
        step = plan.tile_width // g.lattice  # cells between neighbouring windows
        item = torch.finfo(self.dtype).bits // 8
        per_cell = (rows + 2 * g.gs_margin) * (cfg.zl_dim + cfg.coords.channels + 2 * cfg.gs_channels) * item
        cells = min(MAX_GS_CHUNK, int(self.max_memory_mb * 2 ** 20 // (2 * per_cell)))
        return max(batch, 1 + max(0, cells - cols) // max(step, 1))

    def groups(self, plan: TilePlan, batch: int, shared_structure: bool = True,
               chunk: int | None = None) -> Iterator[tuple[int, int, int]]:
        """The units of work of ``tiles``, row-major: (row, first column, end column) of the
        neighbouring tiles that share one GS pass (one batch without shared structure).
        ``chunk``: tiles per unit (default ``gs_chunk_tiles``, from this synthesizer's memory
        budget; processes that share a region pass the value one of them chose)."""
        if not shared_structure:
            chunk = batch
        elif chunk is None:
            chunk = self.gs_chunk_tiles(plan, batch)
        chunk = check_int("tiles per unit of work", chunk, 1)
        for i in range(plan.rows):
            for j0 in range(0, plan.cols, chunk):
                yield i, j0, min(j0 + chunk, plan.cols)

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
    def tiles(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
              progress: bool = False, plan: TilePlan | None = None, shared_structure: bool = True,
              styles: torch.Tensor | None = None, select=None,
              chunk: int | None = None) -> Iterator[tuple[Tile, np.ndarray]]:
        """Yield (tile, float32 pixels (y1 - y0, x1 - x0, 3)) for every tile of the plan, row-major.

        Per row of tiles, GS runs once per chunk of neighbouring tiles (``gs_chunk_tiles``) and
        GT on ``batch`` tiles per forward. With ``shared_structure=False`` every tile runs GS on
        its own window (the authors' patch-by-patch scheme). Values are the raw generator output
        (about [-1, 1] for a trained model, unclamped). ``styles``: optional W+ override
        (1, n_styles, style_dim) of mapping(zg) for GT (see ``styles``). ``select``: optional
        predicate on the index of a unit of work (``groups``); only the units it accepts are
        computed (distributed synthesis shares them among processes); ``chunk``: tiles per unit
        (see ``groups``).
        """
        batch = self.batch_size(batch)
        plan = self.plan(region, tile, batch=batch) if plan is None else plan
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(plan), unit="tile", desc="synthesis", leave=False)
        try:
            with torch.inference_mode():
                zg, styles = self.styles(canvas, styles)
                for g, (i, j0, j1) in enumerate(self.groups(plan, batch, shared_structure, chunk)):
                    if select is None or select(g):
                        group = list(plan.band(i, j0, j1))
                        if shared_structure:
                            first, last = group[0], group[-1]
                            col0 = first.col_cell
                            zs_chunk = self.structure_window(canvas, first.row_cell, first.rows, col0,
                                                             last.col_cell + last.cols - col0, zg)
                        for k in range(0, len(group), batch):
                            part = group[k:k + batch]
                            if shared_structure:
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

    def bands(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
              progress: bool = False, plan: TilePlan | None = None, shared_structure: bool = True,
              styles: torch.Tensor | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (row offset in the region, float32 band (h, width, 3)), one row of tiles each."""
        plan = self.plan(region, tile, batch=batch) if plan is None else plan
        buf = None
        for t, piece in self.tiles(canvas, region, tile, batch, progress, plan, shared_structure, styles):
            if t.j == 0:
                buf = np.empty((t.y1 - t.y0, region.width, 3), np.float32)
            buf[:, t.x0 - region.x: t.x1 - region.x] = piece
            if t.j == plan.cols - 1:
                yield t.y0 - region.y, buf

    def render(self, canvas: Canvas, region: Region, tile: int | None = None, batch: int | None = None,
               progress: bool = False, styles: torch.Tensor | None = None) -> np.ndarray:
        """The whole region as a float32 array (height, width, 3)."""
        out = np.empty((region.height, region.width, 3), np.float32)
        for t, piece in self.tiles(canvas, region, tile, batch, progress, styles=styles):
            out[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] = piece
        return out

    def render_one_shot(self, canvas: Canvas, region: Region) -> np.ndarray:
        """One forward pass for the whole region (the tile = region special case)."""
        out = np.empty((region.height, region.width, 3), np.float32)
        for t, piece in self.tiles(canvas, region, batch=1, plan=self.one_shot_plan(region)):
            out[:] = piece
        return out

    def render_tensor(self, canvas: Canvas, region: Region, tile: int | None = None,
                      styles: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable rendering (B=1 tiles, autograd enabled): (3, height, width) on device.

        Gradients flow into every override tensor of the canvas (zg, zl, noises) and into
        ``styles``, an optional W+ override (1, n_styles, style_dim) of mapping(zg) for GT (GS
        still uses zg), for inversion.
        """
        plan = self.plan(region, tile)
        zg, w = self.styles(canvas, styles)
        rows = []
        for i in range(plan.rows):
            pieces = []
            for t in plan.band(i):
                img = self.forward_tiles(canvas, [t], zg, w)[0]
                pieces.append(img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0])
            rows.append(torch.cat(pieces, dim=2))
        return torch.cat(rows, dim=1)
