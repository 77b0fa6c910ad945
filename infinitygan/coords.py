"""Coordinate systems of the structure synthesizer (paper Section 3.2, Appendix C, Table 4).

Coordinates live on the integer latent-cell lattice (the lattice of zl and zS). Positions are
integers of any size: periodic phases are reduced modulo the period in integer arithmetic
before any trigonometry, so a cell at 2^40 gets exactly the value of a cell near the origin
with the same phase, and the vertical tanh is evaluated in float64.

Channel layouts (C = 3 or 4):

* scenery: [tanh(vertical), cos(horizontal), sin(horizontal)]
* texture: [cos(vertical), sin(vertical), cos(horizontal), sin(horizontal)]
* object:  three constant zero channels

Scenery vertical raw value of canvas row r: ``vertical_step * (r - HORIZON_ROW)``; horizontal
angle of column q: ``pi * (2 (q mod period) / period - 1)`` (the authors' formula; their
period is 139 cells = 2224 pixels).
"""
from __future__ import annotations

import math

import torch

from .config import CoordConfig

#: canvas latent row whose vertical coordinate is 0 (tanh(0)); with the generator's size
#: arithmetic this puts the horizon at output pixel row 2 for every n_up.
HORIZON_ROW = 2


def _periodic_angle(index: torch.Tensor, period: int) -> torch.Tensor:
    """Exact phase: integer reduction first, then float64 angle in [-pi, pi)."""
    m = torch.remainder(index.to(torch.int64), period).to(torch.float64)
    return math.pi * (2.0 * m / period - 1.0)


def coordinate_grid(cfg: CoordConfig, v_half_steps: torch.Tensor, h_index: torch.Tensor,
                    dtype: torch.dtype = torch.float32, v_jitter: float = 0.0,
                    h_jitter: float = 0.0) -> torch.Tensor:
    """Coordinates for a separable grid of rows x columns.

    v_half_steps: (H,) int64, vertical position in half latent rows (pre-tanh value
      ``vertical_step / 2 * v``); for ``texture`` it is read in half cells of the period as well.
    h_index: (W,) int64, horizontal latent column.
    v_jitter / h_jitter: raw offsets (pre-tanh value / fraction of a cell) used in training.
    Returns (C, H, W).
    """
    H, W = v_half_steps.shape[0], h_index.shape[0]
    dev = v_half_steps.device
    if cfg.system == "object":
        return torch.zeros(3, H, W, dtype=dtype, device=dev)
    h_angle = _periodic_angle(h_index, cfg.period) + h_jitter * 2.0 * math.pi / cfg.period
    hc = torch.cos(h_angle).view(1, W).expand(H, W)
    hs = torch.sin(h_angle).view(1, W).expand(H, W)
    if cfg.system == "scenery":
        u = (cfg.vertical_step / 2.0) * v_half_steps.to(torch.float64) + v_jitter
        v = torch.tanh(u).view(H, 1).expand(H, W)
        out = torch.stack([v, hc, hs])
    else:  # texture: periodic on both axes, the row index in whole cells
        v_angle = _periodic_angle(torch.div(v_half_steps, 2, rounding_mode="floor"), cfg.period)
        v_angle = v_angle + v_jitter * 2.0 * math.pi / cfg.period
        vc = torch.cos(v_angle).view(H, 1).expand(H, W)
        vs = torch.sin(v_angle).view(H, 1).expand(H, W)
        out = torch.stack([vc, vs, hc, hs])
    return out.to(dtype)


def canvas_coords(cfg: CoordConfig, row0: int, rows: int, col0: int, cols: int,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Coordinates of canvas latent cells [row0, row0 + rows) x [col0, col0 + cols). (C, rows, cols)."""
    r = torch.arange(rows, dtype=torch.int64, device=device) + row0
    q = torch.arange(cols, dtype=torch.int64, device=device) + col0
    return coordinate_grid(cfg, 2 * (r - HORIZON_ROW), q, dtype=dtype)


def cyclic_turns(cfg: CoordConfig, period: int) -> int:
    """Whole turns of the horizontal phase per cyclic period of ``period`` cells."""
    return max(1, round(period / cfg.period))


def cyclic_coords(cfg: CoordConfig, period: int, row0: int, rows: int, col0: int, cols: int,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """canvas_coords with the horizontal phase periodic in ``period`` cells: m = cyclic_turns
    whole turns per period, phase pi (2 ((m q) mod period) / period - 1) in exact integer
    arithmetic (the horizontal coordinate period becomes period / m cells). (C, rows, cols)."""
    out = canvas_coords(cfg, row0, rows, col0, cols, dtype=torch.float64, device=device)
    if cfg.system != "object":
        q = torch.remainder(torch.arange(cols, dtype=torch.int64, device=device) + col0, period)
        ang = _periodic_angle(q * cyclic_turns(cfg, period), period)
        out[-2] = torch.cos(ang).view(1, -1)  # the horizontal cos / sin are the last two channels
        out[-1] = torch.sin(ang).view(1, -1)
    return out.to(dtype)


def official_test_grid(cfg: CoordConfig, rows: int, cols: int, coord_init: tuple[int, int] = (0, 0),
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The authors' test-time grid for a canvas of rows x cols zl cells (centred vertically).

    Row i has pre-tanh value ``vertical_step / 2 * (2 i - (rows - 1) + x0)``; column j has
    horizontal index ``j + y0``. (C, rows, cols).
    """
    x0, y0 = coord_init
    i = torch.arange(rows, dtype=torch.int64)
    j = torch.arange(cols, dtype=torch.int64)
    return coordinate_grid(cfg, 2 * i - (rows - 1) + x0, j + y0, dtype=dtype)


def training_window(cfg: CoordConfig, v_start: int, h_start: int, v_jitter: float, h_jitter: float,
                    size: int) -> torch.Tensor:
    """One training window of ``size`` x ``size`` zl cells: a pure function of its draws (float64).

    v_start: vertical start in {0 .. V - 1} (V = ``train_vertical_positions``; for ``texture``
    any row of the period); h_start: horizontal start cell (any integer: the phase wraps exactly
    with the period); v_jitter: pre-tanh offset (scenery) or fraction of a cell (texture);
    h_jitter: fraction of a cell, the SAME for the cos and sin channels (the point stays on the
    unit circle). Scenery rows: pre-tanh value ``vertical_step * (row + v_start - c) + v_jitter``
    with c = (size - 1) / 2 + (V - 1) / 2, so the windows are centred on the horizon on average.
    Returns (C, size, size).
    """
    rows = torch.arange(size, dtype=torch.int64)
    if cfg.system == "texture":  # half-steps of whole cells: row index rows + v_start
        v_half = 2 * (rows + int(v_start))
    else:  # half-steps relative to the horizon: 2 * (row - centre), centre may be a half integer
        V = cfg.train_vertical_positions
        center = (size - 1) / 2.0 + (V - 1) / 2.0
        v_half = 2 * (rows + int(v_start)) - int(round(2 * center))
    return coordinate_grid(cfg, v_half, rows + int(h_start), dtype=torch.float64,
                           v_jitter=float(v_jitter), h_jitter=float(h_jitter))


def sample_training_coords(cfg: CoordConfig, batch: int, size: int, generator: torch.Generator,
                           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                           jitter: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows of ``size`` x ``size`` zl cells (paper Section 3.5).

    Horizontal: a uniform phase in [0, period) with wrap-around. Vertical, scenery: the window's
    zS rows start at one of V = ``train_vertical_positions`` positions spread around the horizon
    (raw range of the GT region [-2.85, 2.85] for the paper's sizes; the authors' [-3.0, 2.7]); texture: the vertical axis is
    periodic too and gets a uniform phase like the horizontal one. Jitter: uniform +- half a cell
    on each axis, added to the raw values before tanh / cos / sin (for tanh, half a cell is half
    of ``vertical_step``).

    Returns coords (B, C, size, size) and the vertical label in [-1, 1] (B,) for the auxiliary
    head: start / (V - 1) * 2 - 1 for scenery; 0 for texture (a periodic axis has no "up", the
    loop does not train the head on it).
    """
    periodic_v = cfg.system == "texture"
    V = cfg.period if periodic_v else cfg.train_vertical_positions
    v_start = torch.randint(0, V, (batch,), generator=generator)
    h_start = torch.randint(0, cfg.period, (batch,), generator=generator)
    if jitter:
        v_cell = 1.0 if periodic_v else cfg.vertical_step
        vj = (torch.rand(batch, generator=generator, dtype=torch.float64) - 0.5) * v_cell
        hj = torch.rand(batch, generator=generator, dtype=torch.float64) - 0.5
    else:
        vj = torch.zeros(batch, dtype=torch.float64)
        hj = torch.zeros(batch, dtype=torch.float64)
    out = [training_window(cfg, int(v_start[b]), int(h_start[b]), float(vj[b]), float(hj[b]), size)
           for b in range(batch)]
    coords = torch.stack(out).to(device=device, dtype=dtype)
    if periodic_v:
        label = torch.zeros(batch, dtype=torch.float32)
    else:
        label = (v_start.to(torch.float32) / max(V - 1, 1)) * 2.0 - 1.0
    return coords, label.to(device)
