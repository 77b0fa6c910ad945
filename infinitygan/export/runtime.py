"""Rendering from an export folder with onnxruntime and numpy alone (``generate --runtime onnx``):
no torch is imported on this path, which shows that the graphs and the manifest are enough.

The canvas is recomputed here from its definition (``infinitygan.latents``): the same 64-bit
counter-based hash of (seed, stream, channel, row, column) with the same Box-Muller transform,
and the same coordinates (``infinitygan.coords``); the plan and the writers are the engine's own
torch-free modules (``planning``, ``tiling``, ``geometry``, ``io.images``), and the request is the
engine's ``RenderOptions``: what this runtime cannot honour (another device or dtype, a memory
budget: it has no memory model of the graphs) is refused in one line, never ignored. Pixels agree
with ``generate`` up to float32 rounding of two runtimes (well within 2/255, tests/test_export.py).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..errors import UserError, shown
from ..geometry import Geometry
from ..planning import Planner, RenderPlan, batches
from ..tiling import Region

M32 = np.uint64(0xFFFFFFFF)
_C1, _C2 = np.uint64(0x7FEB352D), np.uint64(0x21F0AAAD)
_LANE_A, _LANE_B = 0x3C6EF372, 0x6A09E667
_COL_A, _COL_B = 0x510E527F, 0x1F83D9AB
HORIZON_ROW = 2
#: tile size (pixels) and tiles per forward when the options give none
DEFAULT_TILE, DEFAULT_BATCH = 256, 4


def _mix(h):
    h = h ^ (h >> np.uint64(16))
    h = (h * _C1) & M32
    h = h ^ (h >> np.uint64(15))
    h = (h * _C2) & M32
    return h ^ (h >> np.uint64(16))


def _mix_int(h: int) -> int:
    return int(_mix(np.uint64(h)))


def _absorb(h, word):
    return _mix((h ^ word) & M32)


def _absorb64(h, v: np.ndarray):
    u = v.astype(np.int64).view(np.uint64)  # two's complement, as the engine's int64 & masks
    return _absorb(_absorb(h, u & M32), (u >> np.uint64(32)) & M32)


def stream_key(seed: int, stream: str) -> int:
    digest = hashlib.blake2b(f"{int(seed)}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0xFFFFFFFF


def gaussian_field(key: int, channels: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """N(0, 1) float32 (C, H, W) at every (channel, row, col): the engine's ``gaussian_field``."""
    c = np.arange(channels, dtype=np.uint64)
    lanes = []
    with np.errstate(over="ignore"):
        for seed in (_LANE_A, _LANE_B):
            hc = _absorb(np.full(channels, _mix_int(key ^ seed), np.uint64), c)
            lanes.append(_absorb64(hc.reshape(-1, 1), rows.reshape(1, -1))[..., None])
        qa = _absorb64(np.full(cols.shape, _COL_A, np.uint64), cols).reshape(1, 1, -1)
        qb = _absorb64(np.full(cols.shape, _COL_B, np.uint64), cols).reshape(1, 1, -1)
        h1 = _mix(_mix(lanes[0] ^ qa) ^ lanes[1] ^ qb)
        h2 = _mix(h1 ^ np.uint64(0x5BD1E995))
    u1 = ((h1 >> np.uint64(8)).astype(np.float32) + np.float32(0.5)) * np.float32(1.0 / 16777216.0)
    u2 = (h2 >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    z = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2.0 * math.pi) * u2)
    return z.astype(np.float32)


def _angle(index: np.ndarray, period: int) -> np.ndarray:
    m = np.remainder(index.astype(np.int64), period).astype(np.float64)
    return math.pi * (2.0 * m / period - 1.0)


def canvas_coords(coords: dict, row0: int, rows: int, col0: int, cols: int) -> np.ndarray:
    """The engine's ``canvas_coords`` (plain canvas): (C, rows, cols) float32."""
    r = np.arange(rows, dtype=np.int64) + row0
    q = np.arange(cols, dtype=np.int64) + col0
    system, period = coords["system"], coords["period_cells"]
    if system == "object":
        return np.zeros((3, rows, cols), np.float32)
    ha = _angle(q, period)
    hc = np.broadcast_to(np.cos(ha)[None], (rows, cols))
    hs = np.broadcast_to(np.sin(ha)[None], (rows, cols))
    v_half = 2 * (r - HORIZON_ROW)
    if system == "scenery":
        v = np.broadcast_to(np.tanh(coords["vertical_step"] / 2.0 * v_half.astype(np.float64))[:, None], (rows, cols))
        out = np.stack([v, hc, hs])
    else:
        va = _angle(np.floor_divide(v_half, 2), period)
        out = np.stack([np.broadcast_to(np.cos(va)[:, None], (rows, cols)),
                        np.broadcast_to(np.sin(va)[:, None], (rows, cols)), hc, hs])
    return out.astype(np.float32)


def _fields(m: dict, section: str, ranges: dict[str, tuple[int, int]], folder: Path) -> dict:
    """``m[section]``: a mapping whose ``ranges`` fields are integers in range (UserError if not)."""
    part = m.get(section)
    if not isinstance(part, dict):
        raise UserError(f"{folder}: manifest.json has no {section} mapping (a damaged or hand-edited export)")
    for k, (lo, hi) in ranges.items():
        v = part.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise UserError(f"{folder}: manifest.json {section}.{k} must be an integer in {lo}..{hi}, got {shown(v)}")
    return part


def check_manifest(m, folder: Path) -> dict:
    """The manifest of an export folder, checked for what this runtime reads (UserError, one line)."""
    if not isinstance(m, dict):
        raise UserError(f"{folder}: manifest.json is not a mapping (got {type(m).__name__}); export the model again")
    if m.get("format") != "infinitygan-export" or m.get("format_version") != 1:
        raise UserError(f"{folder}: an export of another format version ({shown(m.get('format_version'))})")
    if m.get("runtime", "onnx") != "onnx":
        raise UserError(f"{folder} holds a {shown(m.get('runtime'))} export: --runtime onnx needs "
                        "`infinitygan export --format onnx`")
    graphs = m.get("graphs")
    if not isinstance(graphs, dict) or set(graphs) != {"mapping", "structure", "texture"} or not all(
            isinstance(g, dict) and isinstance(g.get("file"), str) and Path(g["file"]).name == g["file"]
            for g in graphs.values()):
        raise UserError(f"{folder}: manifest.json must name the mapping, structure and texture graphs' files")
    _fields(m, "latents", {"zg_dim": (1, 8192), "zl_dim": (1, 8192), "style_dim": (1, 8192), "n_styles": (1, 64)},
            folder)
    _fields(m, "geometry", {"lattice": (2, 256), "n_up": (1, 8), "gs_layers": (0, 32), "gs_kernel": (1, 31)}, folder)
    coords = _fields(m, "coordinates", {"period_cells": (2, 1 << 20)}, folder)
    step = coords.get("vertical_step")
    if coords.get("system") not in ("scenery", "texture", "object") or isinstance(step, bool) or not isinstance(
            step, (int, float)) or not math.isfinite(step):
        raise UserError(f"{folder}: manifest.json coordinates must name a system (scenery, texture, object) and a "
                        "finite vertical_step")
    return m


class OnnxRenderer:
    """The three graphs of an export folder, run tile by tile on the plain canvas of a seed."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        folder = Path(folder)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError, RecursionError):
            raise UserError(f"{folder} is not an export folder (no readable manifest.json; see `infinitygan "
                            "export`)") from None
        self.manifest = check_manifest(manifest, folder)
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the onnx runtime needs onnxruntime: pip install 'infinitygan[export]'") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.sessions = {k: ort.InferenceSession(str(folder / g["file"]), opts, providers=["CPUExecutionProvider"])
                             for k, g in self.manifest["graphs"].items()}
        except Exception as e:  # a missing, truncated or foreign graph file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise UserError(f"{folder}: cannot load its ONNX graphs ({first})") from None
        geo = self.manifest["geometry"]
        self.geometry = Geometry(geo["n_up"], geo["gs_layers"], geo["gs_kernel"])
        self.planner = Planner(self.geometry)  # no channel widths: the tile size is always given

    def plan(self, region: Region, path: str | Path | None = None, tile: int = DEFAULT_TILE,
             batch: int = DEFAULT_BATCH) -> RenderPlan:
        """The plan of ``region`` (for a file at ``path``: PNG in short rows): tiles of ``tile``
        pixels, GS per tile, ``batch`` tiles per forward."""
        if path is None:
            return self.planner.plan(region, tile, batch, shared_structure=False)
        return self.planner.file_plan(region, path, tile, batch, shared_structure=False)

    def tiles(self, seed: int, plan: RenderPlan):
        """Yield (tile, float32 pixels (h, w, 3)) of the plan row-major, like ``Synthesizer.tiles``."""
        lat, geo = self.manifest["latents"], self.geometry
        zero = np.zeros(1, np.int64)
        zg = gaussian_field(stream_key(seed, "zg"), lat["zg_dim"], zero, zero).reshape(1, lat["zg_dim"])
        w = self.sessions["mapping"].run(None, {"zg": zg})[0]
        m = geo.gs_margin
        for pairs in batches([plan]):
            part = [tl for _, tl in pairs]
            zl, coords, noises = [], [], [[] for _ in range(2 * geo.n_up)]
            for tl in part:
                r = np.arange(tl.rows + 2 * m, dtype=np.int64) + tl.row_cell - m
                q = np.arange(tl.cols + 2 * m, dtype=np.int64) + tl.col_cell - m
                zl.append(gaussian_field(stream_key(seed, "zl"), lat["zl_dim"], r, q))
                coords.append(canvas_coords(self.manifest["coordinates"], tl.row_cell - m, tl.rows + 2 * m,
                                            tl.col_cell - m, tl.cols + 2 * m))
                for j, ((ya, yb), (xa, xb)) in enumerate(zip(geo.ts_ranges(tl.row_cell, tl.rows),
                                                              geo.ts_ranges(tl.col_cell, tl.cols))):
                    noises[j].append(gaussian_field(stream_key(seed, f"noise{j}"), 1,
                                                    np.arange(ya, yb, dtype=np.int64), np.arange(xa, xb, dtype=np.int64)))
            b = len(part)
            zs = self.sessions["structure"].run(None, {"zg": np.repeat(zg, b, 0), "zl": np.stack(zl),
                                                       "coords": np.stack(coords)})[0]
            styles = np.repeat(np.repeat(w[:, None], lat["n_styles"], axis=1), b, 0)
            rgb = self.sessions["texture"].run(None, {"zs": zs, "styles": styles,
                                                      **{f"noise_{j}": np.stack(n) for j, n in enumerate(noises)}})[0]
            for tl, img in zip(part, rgb):
                yield tl, img[:, tl.oy: tl.oy + tl.y1 - tl.y0, tl.ox: tl.ox + tl.x1 - tl.x0].transpose(1, 2, 0)


def check_options(options) -> None:
    """UserError (one line) for what this runtime cannot honour: it runs the graphs on the CPU in
    float32 and has no memory model of them (the tile size is ``--tile``, not a budget)."""
    if str(options.device) not in ("auto", "cpu"):
        raise UserError(f"--runtime onnx runs on the CPU (onnxruntime's CPU provider): --device {options.device} "
                        "is not available to it")
    from ..render.options import dtype_name

    if dtype_name(options.dtype) != "float32":
        raise UserError(f"--runtime onnx computes in float32 (the exported graphs' type), not --dtype {options.dtype}")
    if options.max_memory_mb is not None:
        raise UserError("--runtime onnx has no memory model of the exported graphs: give --tile (and --batch) "
                        "instead of --max-memory")


def default_region(manifest: dict, width: int, height: int, x: int | None, y: int | None) -> Region:
    """The engine's default placement (centred on x = 0 and on the horizon, lattice-snapped)."""
    L = manifest["geometry"]["lattice"]
    cx = L * round(-width / 2 / L)
    cy = L * round((HORIZON_ROW - height / 2) / L)
    return Region(cx if x is None else x, cy if y is None else y, width, height)


def generate_onnx(folder, seed: int, width: int, height: int, x, y, out, options, quiet: bool) -> Path:
    """``generate --runtime onnx``: the region of seed's plain canvas through onnxruntime, streamed
    to ``out`` by the engine's writers. ``options``: the ``RenderOptions`` (tile, default 256;
    batch, default 4; progress; force; see ``check_options`` for what is refused)."""
    from ..io.images import check_output, write_tiles

    check_options(options)
    r = OnnxRenderer(folder)
    region = default_region(r.manifest, width, height, x, y)
    path = check_output(out, region.width, region.height, options.force)
    plan = r.plan(region, path, options.tile or DEFAULT_TILE, options.batch or DEFAULT_BATCH)
    tiles = r.tiles(seed, plan)
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), unit="tile", desc="synthesis (onnx)", leave=False)

    def pieces():
        for tl, px in tiles:
            yield tl.y0 - region.y, tl.x0 - region.x, px
            if bar is not None:
                bar.update(1)

    try:
        write_tiles(path, region.width, region.height, plan.tiles.tile_height, plan.tiles.tile_width, pieces(),
                    options.force)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        import click

        click.echo(f"wrote {path} ({region.width}x{region.height}; onnx runtime)", err=True)
    return path
