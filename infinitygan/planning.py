"""Planning a render, without torch: the tile from the memory budget, the region's grid of tiles,
the structure (GS) chunks and the units of work that every runner computes.

    planner = Planner(generator.geometry, config.generator, "cpu", item_bytes=4)   # 256 MB budget
    plan = planner.plan(region, tile=None, batch=None)          # a RenderPlan
    for i, j0, j1 in plan.units(): ...                          # tiles j0 .. j1 - 1 of row i: one GS pass

A runner takes a plan and the ``RenderOptions`` (progress bar, force, ...) and computes the plan's
tiles: ``Synthesizer.tiles`` in this process; ``parallel.tiles`` over torchrun ranks (rank 0's
plan, unit g on rank g mod world); the tile server (``serve.tiles``) and the ONNX runtime
(``export.runtime``), which run GS per tile, in forwards of ``batch`` tiles (``batches``). Every
input of a tile is a function of its position, so the plan decides memory and speed, never the
pixels.

Default tile: the largest (up to 512 pixels on CPU, 1024 on CUDA) whose estimated working memory
(``working_bytes``: the largest input + intermediate + output of a GT layer for a batch of
windows) fits the budget (CPU default 256 MB; CUDA: a quarter of the device's memory, which the
caller measures). The estimate is a lower bound: measured on CPU for paper-101, the process's peak
above the loaded model is about 1.8x it (the allocator's workspace and fragmentation), so the CPU
default leaves paper-101 at 1024^2 at about 830 MB peak RSS (docs/benchmarks.md). GS runs once per
chunk of neighbouring tiles of a row (sharing its margins), as many as fit ``MAX_GS_CHUNK`` cells
and half the budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from .config import GeneratorConfig
from .errors import UserError, check_int
from .io.images import png_tile_height
from .tiling import Region, Tile, TilePlan, plan_region, tile_unit

__all__ = ["DEFAULT_MAX_MEMORY_MB", "MAX_GS_CHUNK", "PAPER_PATCH_STEP", "Planner", "RenderPlan", "batches",
           "default_tile_batch"]

#: the authors' inference scheme: 101-pixel patches (11 zS cells) every 96 pixels, one per forward
PAPER_PATCH_STEP = 96
#: working-memory budget when none is given (MB); CUDA: a quarter of the device (the caller's)
DEFAULT_MAX_MEMORY_MB = {"cpu": 256.0, "mps": 1024.0}
#: widest GS chunk (zS cells) of a row of tiles
MAX_GS_CHUNK = 1024
#: bytes per value of each compute dtype
ITEM_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def default_tile_batch(device_type: str) -> tuple[int, int]:
    """Largest tile size (pixels) and batch size for a device kind (before the memory budget)."""
    if device_type == "cuda":
        return 1024, 2
    return 512, 1


@dataclass(frozen=True)
class RenderPlan:
    """What a runner computes: the grid of ``tiles``, ``batch`` tiles per GT forward and units of
    work of ``chunk`` neighbouring tiles of a row that share one GS pass (``shared_structure``;
    without it every tile runs GS on its own window and a unit is one batch)."""

    tiles: TilePlan
    batch: int
    chunk: int
    shared_structure: bool = True

    def __post_init__(self):
        object.__setattr__(self, "batch", check_int("batch size", self.batch, 1))
        chunk = self.chunk if self.shared_structure else self.batch
        object.__setattr__(self, "chunk", check_int("tiles per unit of work", chunk, 1))

    @property
    def region(self) -> Region:
        return self.tiles.region

    def __len__(self) -> int:
        return len(self.tiles)

    def units(self) -> Iterator[tuple[int, int, int]]:
        """The units of work, row-major: (row, first column, end column) of their tiles."""
        for i in range(self.tiles.rows):
            for j0 in range(0, self.tiles.cols, self.chunk):
                yield i, j0, min(j0 + self.chunk, self.tiles.cols)

    def unit_tiles(self) -> Iterator[list[Tile]]:
        """The tiles of every unit of work, in the order of ``units``."""
        for i, j0, j1 in self.units():
            yield list(self.tiles.band(i, j0, j1))


def batches(plans: Sequence[RenderPlan]) -> Iterator[list[tuple[int, Tile]]]:
    """(plan index, tile) pairs of several plans whose tiles share one window size, row-major plan
    after plan, ``plans[0].batch`` at a time: forwards that run GS per tile and may span rows and
    plans (the tile server renders many map tiles so; the ONNX runtime one region)."""
    if not plans:
        return
    n = plans[0].batch
    part: list[tuple[int, Tile]] = []
    for k, plan in enumerate(plans):
        for t in plan.tiles:
            part.append((k, t))
            if len(part) == n:
                yield part
                part = []
    if part:
        yield part


@dataclass(frozen=True)
class Planner:
    """Plans the renders of one generator on one kind of device.

    geometry: the generator's ``Geometry`` (its lattice, margins, padding). config: its
    ``GeneratorConfig`` (channel widths, for the memory estimate; None where they are unknown:
    then every tile size must be given). device_type: "cpu", "cuda" or "mps" (default tile and
    batch). item_bytes: bytes per value of the compute dtype. max_memory_mb: the working-memory
    budget (default ``DEFAULT_MAX_MEMORY_MB`` of the device kind; CUDA's must be given).
    limit_bytes: the most memory a plan's forward may need (the device's memory on CUDA, which the
    caller measures; None: the memory the host has available, ``io.resources``): a plan beyond it,
    e.g. a 16384-pixel tile at batch 1024, is refused before anything is allocated.
    """

    geometry: object
    config: GeneratorConfig | None = None
    device_type: str = "cpu"
    item_bytes: int = 4
    max_memory_mb: float | None = None
    limit_bytes: int | None = None

    def __post_init__(self):
        mb = self.max_memory_mb
        if mb is None:
            if self.device_type == "cuda":  # a quarter of the device: only torch can tell
                raise ValueError("a CUDA planner needs its memory budget (max_memory_mb)")
            mb = DEFAULT_MAX_MEMORY_MB.get(self.device_type, DEFAULT_MAX_MEMORY_MB["cpu"])
        if not (isinstance(mb, (int, float)) and math.isfinite(mb) and mb > 0):
            raise UserError(f"the memory budget must be positive, got {mb} MB")
        object.__setattr__(self, "max_memory_mb", float(mb))

    @property
    def unit(self) -> int:
        """Tile sizes are multiples of this (the lattice, and 16 for TIFF tiles)."""
        return tile_unit(self.geometry)

    def _widths(self) -> GeneratorConfig:
        if self.config is None:
            raise UserError("this renderer has no memory model of its generator: give the tile size")
        return self.config

    # ---- sizes -----------------------------------------------------------------------------
    def tile_size(self, tile: int | None, batch: int = 1) -> int:
        """A requested tile size rounded to the unit, or the default from the memory budget."""
        if tile is None:
            return self.auto_tile(batch)
        tile = check_int("tile size", tile, 1)
        return max(self.unit, int(round(tile / self.unit)) * self.unit)

    def batch_size(self, batch: int | None) -> int:
        return default_tile_batch(self.device_type)[1] if batch is None else check_int("batch size", batch, 1)

    def working_bytes(self, rows: int, cols: int, batch: int = 1) -> int:
        """Estimated peak working memory of GT on ``batch`` windows of rows x cols zS cells:
        the largest (input + intermediate + output) of any GT layer."""
        g, cfg = self.geometry, self._widths()
        sizes = list(zip(g.ts_sizes(rows), g.ts_sizes(cols)))
        h, w, c_in = rows, cols, cfg.gs_channels
        peak = 0
        for j, ((ho, wo), c) in enumerate(zip(sizes, cfg.ts_channels)):
            tmp = c * (2 * h - 1) * (2 * w - 1) if j % 2 == 0 and not g.padded else 0  # transposed conv
            peak = max(peak, c_in * h * w + tmp + c * ho * wo)
            h, w, c_in = ho, wo, c
        return batch * peak * self.item_bytes

    def auto_tile(self, batch: int = 1) -> int:
        """The largest tile (<= the device's default) whose working memory fits the budget."""
        budget = self.max_memory_mb * 2 ** 20
        L, shrink = self.geometry.lattice, self.geometry.shrink
        t = max(self.unit, default_tile_batch(self.device_type)[0] // self.unit * self.unit)
        while t > self.unit:
            n = -(-(t + shrink) // L)
            if self.working_bytes(n, n, batch) <= budget:
                break
            t -= self.unit
        return t

    def gs_chunk_tiles(self, tiles: TilePlan, batch: int) -> int:
        """How many neighbouring tiles of a row share one GS pass: as many as fit MAX_GS_CHUNK
        cells and the memory budget (at least ``batch``)."""
        g, cfg = self.geometry, self._widths()
        rows, cols = tiles.window
        step = tiles.tile_width // g.lattice  # cells between neighbouring windows
        per_cell = (rows + 2 * g.gs_margin) * (cfg.zl_dim + cfg.coords.channels + 2 * cfg.gs_channels) * self.item_bytes
        cells = min(MAX_GS_CHUNK, int(self.max_memory_mb * 2 ** 20 // (2 * per_cell)))
        return max(batch, 1 + max(0, cells - cols) // max(step, 1))

    # ---- grids -----------------------------------------------------------------------------
    def tile_plan(self, region: Region, tile: int | None = None, tile_height: int | None = None,
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
        plan = self.one_shot_plan(region)
        return max(plan.tile_height, plan.tile_width)

    def paper_plan(self, region: Region) -> TilePlan:
        """The authors' scheme: 101-pixel patches (for paper-101) every 96 pixels."""
        step = PAPER_PATCH_STEP if self.geometry.lattice == 16 else self.geometry.lattice * 6
        return plan_region(region, self.geometry, step, step, self.geometry.lattice, exact=True)

    # ---- plans -----------------------------------------------------------------------------
    def render_plan(self, tiles: TilePlan, batch: int | None = None, shared_structure: bool = True) -> RenderPlan:
        """``tiles`` in forwards of ``batch`` tiles (default: the device's), GS shared by chunks of
        ``gs_chunk_tiles`` (or per tile without ``shared_structure``)."""
        b = self.batch_size(batch)
        chunk = self.gs_chunk_tiles(tiles, b) if shared_structure else b
        plan = RenderPlan(tiles, b, chunk, shared_structure)
        self.check_fits(plan)
        return plan

    def plan_bytes(self, plan: RenderPlan) -> int:
        """The working memory of a plan's largest step (a lower bound, see ``working_bytes``): GT
        on a forward of its tiles (at most ``batch``, the unit's, the row's), or GS on a unit."""
        g, cfg, tiles = self.geometry, self._widths(), plan.tiles
        rows, cols = tiles.window
        per_unit = min(plan.chunk, tiles.cols)
        gt = self.working_bytes(rows, cols, min(plan.batch, per_unit))
        if not plan.shared_structure:
            return gt
        step = tiles.tile_width // g.lattice
        cells = cols + (per_unit - 1) * step  # the unit's GS window, margins counted per cell below
        per_cell = (rows + 2 * g.gs_margin) * (cfg.zl_dim + cfg.coords.channels + 2 * cfg.gs_channels) * self.item_bytes
        return max(gt, cells * per_cell)

    def check_fits(self, plan: RenderPlan) -> None:
        """UserError when the plan's largest step needs more than ``limit_bytes`` (default: the
        memory the host has available): refused before anything is allocated."""
        if self.config is None:  # no memory model: the caller sizes its own tiles
            return
        from .io.resources import available_memory, size_text

        limit = self.limit_bytes if self.limit_bytes is not None else available_memory()
        need = self.plan_bytes(plan)
        if limit is not None and need > limit:
            t = plan.tiles
            raise UserError(f"tiles of {t.tile_width}x{t.tile_height} pixels at batch {plan.batch} need at least "
                            f"{size_text(need)} of working memory, more than the {size_text(limit)} "
                            f"{'of the device' if self.limit_bytes is not None else 'available'}: a smaller --tile "
                            "or --batch (the default tile fits the memory budget)")

    def plan(self, region: Region, tile: int | None = None, batch: int | None = None,
             tile_height: int | None = None, shared_structure: bool = True) -> RenderPlan:
        """The plan of a region: tile and batch as requested, or the defaults of the budget."""
        b = self.batch_size(batch)
        return self.render_plan(self.tile_plan(region, tile, tile_height, b), b, shared_structure)

    def file_plan(self, region: Region, path: str | Path, tile: int | None = None, batch: int | None = None,
                  shared_structure: bool = True) -> RenderPlan:
        """The plan of a region written to ``path``: PNG gets short rows of tiles
        (``io.images.png_tile_height``), so memory is bounded by a short row, never the image."""
        th = png_tile_height(region.width, self.unit) if Path(path).suffix.lower() == ".png" else None
        return self.plan(region, tile, batch, th, shared_structure)
