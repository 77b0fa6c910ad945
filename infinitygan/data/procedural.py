"""Built-in procedural landscape source (pure numpy, deterministic by seed).

Used as a zero-download training set (``--data procedural``) and in tests/demos.

Each image is a small scene: a vertical sky gradient (optional sun glow, stars at
night) with soft fBm clouds, 1-3 layered mountain ridges drawn from 1-D ridged fBm
(farther ridges hazier = aerial perspective, optional snow caps and a tree line), and
below the horizon either grass/ground with perspective-compressed texture or water
carrying a blurred, darkened, rippled vertical reflection of what is above, with an
optional grassy shore in the foreground.  Horizon height, ridge count, time of day
(day / dusk / dawn / overcast / night) and terrain palette vary per image.

Geometry is defined in *world units of the image height*: column ``c`` maps to
``u = (c + 0.5) / H + x0`` and row ``r`` to ``v = (r + 0.5) / H``.  A wide render
(e.g. 197 x 2048) is therefore the same scene continued horizontally, never a
stretched square image: its left 197 columns (nearly) equal the square render of
the same seed (only the separable blurs of the reflection differ at the border).

Shapes:
    render_landscape(seed, H, W)   -> np.ndarray (H, W, 3) uint8
    ProceduralLandscapes()[i]      -> torch.float32 (3, size, size) in [-1, 1]

With ``pre_resize`` (``open_dataset("procedural", 197, 128)``, as the presets train), each
rendered image is Lanczos-resized to ``pre_resize`` and back to ``size``, like the images of a
folder (``data.preprocess.preprocess_uint8``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .preprocess import preprocess_uint8  # the folders' preprocessing

__all__ = ["render_landscape", "ProceduralLandscapes"]

_MASK32 = 0xFFFFFFFF
#: the pixel arrays (H, W) and (H, W, 3) are float32 (half the memory traffic of float64); the
#: noise coordinates stay float64 (x0 up to 1000 times octave frequencies: float32 would quantise)
_F = np.float32


# ----------------------------------------------------------------------------- noise
def _hash2(ix: np.ndarray, iy: np.ndarray, seed: int, dtype=np.float64) -> np.ndarray:
    """Integer lattice hash -> ``dtype`` in [0, 1). ``ix``/``iy`` broadcast together."""
    x = (np.asarray(ix, dtype=np.int64) & _MASK32).astype(np.uint32)
    y = (np.asarray(iy, dtype=np.int64) & _MASK32).astype(np.uint32)
    h = x * np.uint32(0x8DA6B343) ^ y * np.uint32(0xD8163841) ^ np.uint32((seed * 0x9E3779B1) & _MASK32)
    h = np.atleast_1d(h)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    if dtype == np.float32:  # the top 24 bits: exact in float32, and never rounds up to 1
        return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return h.astype(np.float64) * (1.0 / 4294967296.0)


def _smooth(f: np.ndarray) -> np.ndarray:
    return f * f * (3.0 - 2.0 * f)


def _vnoise1(xs: np.ndarray, seed: int) -> np.ndarray:
    """1-D value noise in [0, 1] at positions ``xs`` (any shape)."""
    i0 = np.floor(xs)
    s = _smooth(xs - i0)
    i0 = i0.astype(np.int64)
    a = _hash2(i0, 0, seed)
    b = _hash2(i0 + 1, 0, seed)
    return a + (b - a) * s


def _vnoise2(xs: np.ndarray, ys: np.ndarray, seed: int) -> np.ndarray:
    """Separable-coordinate 2-D value noise: ``xs`` (W,), ``ys`` (H,) -> float32 (H, W) in [0, 1].

    Lattice values are hashed once on the covering integer grid, then interpolated with
    smoothstep weights along x, then along y (exactly equal to per-pixel value noise).
    """
    ix = np.floor(xs)
    sx = _smooth(xs - ix).astype(_F)[None, :]
    ix = ix.astype(np.int64)
    iy = np.floor(ys)
    sy = _smooth(ys - iy).astype(_F)[:, None]
    iy = iy.astype(np.int64)
    x0, y0 = int(ix.min()), int(iy.min())
    gx = np.arange(x0, int(ix.max()) + 2, dtype=np.int64)
    gy = np.arange(y0, int(iy.max()) + 2, dtype=np.int64)
    g = _hash2(gx[None, :], gy[:, None], seed, _F)  # (ny, nx)
    cx = ix - x0
    gxl = g[:, cx]
    gxi = gxl + (g[:, cx + 1] - gxl) * sx  # (ny, W)
    cy = iy - y0
    top = gxi[cy]
    return top + (gxi[cy + 1] - top) * sy


def _fbm1(xs: np.ndarray, seed: int, octaves: int = 5, gain: float = 0.5, ridged: bool = False) -> np.ndarray:
    total = np.zeros_like(xs, dtype=np.float64)
    amp, norm, f = 1.0, 0.0, 1.0
    for k in range(octaves):
        n = _vnoise1(xs * f + 13.7 * k, seed + 101 * k)
        if ridged:
            n = 1.0 - np.abs(2.0 * n - 1.0)
            n = n * n
        total += amp * n
        norm += amp
        amp *= gain
        f *= 2.03
    return total / norm


def _fbm2(xs: np.ndarray, ys: np.ndarray, seed: int, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    total = None
    amp, norm, f = 1.0, 0.0, 1.0
    for k in range(octaves):
        n = _vnoise2(xs * f + 7.31 * k, ys * f + 3.17 * k, seed + 131 * k)
        total = amp * n if total is None else total + amp * n
        norm += amp
        amp *= gain
        f *= 2.01
    return total / norm


def _sstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    d = np.asarray(e1 - e0, dtype=np.result_type(x, e0, e1))
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    t = np.clip((x - e0) / d, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _box_blur(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Box blur of half-width ``radius`` along ``axis`` with edge replication (cumsum based)."""
    if radius <= 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / (2 * radius + 1)


# --------------------------------------------------------------------------- palettes
def _c(*rgb: float) -> np.ndarray:
    return np.array(rgb, dtype=_F)


# Time of day: sky colours, cloud colours, light tint applied to terrain, sun.
_TIMES = {
    "day": dict(top=_c(0.22, 0.42, 0.78), hor=_c(0.68, 0.80, 0.93), cloud=_c(0.98, 0.98, 0.98),
                shadow=_c(0.66, 0.70, 0.80), light=_c(1.0, 1.0, 0.97), sun=_c(1.0, 0.97, 0.85),
                glow=0.25, disk=True, stars=False, cover=(0.45, 0.68)),
    "dusk": dict(top=_c(0.17, 0.17, 0.40), hor=_c(0.98, 0.58, 0.30), cloud=_c(0.98, 0.55, 0.42),
                 shadow=_c(0.40, 0.26, 0.38), light=_c(0.85, 0.60, 0.55), sun=_c(1.0, 0.75, 0.40),
                 glow=0.7, disk=True, stars=False, cover=(0.45, 0.65)),
    "dawn": dict(top=_c(0.38, 0.48, 0.75), hor=_c(0.98, 0.82, 0.72), cloud=_c(1.0, 0.86, 0.84),
                 shadow=_c(0.60, 0.55, 0.66), light=_c(0.95, 0.85, 0.82), sun=_c(1.0, 0.90, 0.75),
                 glow=0.45, disk=True, stars=False, cover=(0.5, 0.7)),
    "overcast": dict(top=_c(0.52, 0.55, 0.60), hor=_c(0.78, 0.80, 0.82), cloud=_c(0.86, 0.87, 0.89),
                     shadow=_c(0.48, 0.50, 0.55), light=_c(0.80, 0.82, 0.85), sun=_c(1.0, 1.0, 1.0),
                     glow=0.0, disk=False, stars=False, cover=(0.2, 0.4)),
    "night": dict(top=_c(0.02, 0.03, 0.10), hor=_c(0.12, 0.17, 0.33), cloud=_c(0.22, 0.25, 0.36),
                  shadow=_c(0.06, 0.07, 0.13), light=_c(0.32, 0.36, 0.52), sun=_c(0.9, 0.92, 1.0),
                  glow=0.12, disk=True, stars=True, cover=(0.55, 0.75)),
}
_TIME_NAMES = ["day", "day", "day", "dusk", "dawn", "overcast", "night"]

# Terrain: far rock, near hill, ground far/near, tree colour, snow probability.
_TERRAINS = {
    "green": dict(rock=_c(0.36, 0.38, 0.42), hill=_c(0.20, 0.32, 0.16), gfar=_c(0.42, 0.55, 0.24),
                  gnear=_c(0.20, 0.38, 0.10), tree=_c(0.08, 0.20, 0.08), snow=0.35, trees=0.6),
    "dry": dict(rock=_c(0.50, 0.42, 0.36), hill=_c(0.45, 0.40, 0.26), gfar=_c(0.70, 0.62, 0.38),
                gnear=_c(0.55, 0.45, 0.22), tree=_c(0.22, 0.26, 0.12), snow=0.1, trees=0.25),
    "autumn": dict(rock=_c(0.38, 0.36, 0.38), hill=_c(0.48, 0.30, 0.12), gfar=_c(0.60, 0.48, 0.22),
                   gnear=_c(0.42, 0.28, 0.10), tree=_c(0.35, 0.16, 0.06), snow=0.3, trees=0.6),
    "alpine": dict(rock=_c(0.40, 0.42, 0.48), hill=_c(0.18, 0.28, 0.20), gfar=_c(0.38, 0.50, 0.30),
                   gnear=_c(0.18, 0.34, 0.14), tree=_c(0.05, 0.16, 0.09), snow=0.9, trees=0.7),
    "snow": dict(rock=_c(0.55, 0.58, 0.64), hill=_c(0.80, 0.83, 0.88), gfar=_c(0.88, 0.90, 0.94),
                 gnear=_c(0.80, 0.83, 0.88), tree=_c(0.10, 0.16, 0.14), snow=1.0, trees=0.5),
}
_TERRAIN_NAMES = ["green", "green", "green", "dry", "autumn", "alpine", "alpine", "snow"]


def _jitter(rng: np.random.Generator, col: np.ndarray, amount: float = 0.06) -> np.ndarray:
    return np.clip(col * (1.0 + amount * rng.standard_normal(3)) * (1.0 + amount * rng.standard_normal()),
                   0.0, 1.0).astype(_F)


# --------------------------------------------------------------------------- render
@dataclass(frozen=True)
class _Scene:
    """The draws and coordinates every stage of one render shares.

    ``rng`` is consumed by the stages in order (sky, clouds, mountains, tree line, ground, water):
    each stage draws what it needs when it runs, so the order of the calls is part of the scene.
    Coordinates: ``u`` (W,) and ``v`` (H,) float64 world units, ``V`` (H, 1) float32.
    """

    H: int
    W: int
    rng: np.random.Generator
    ns: list[int]  # per-feature noise seeds
    time: dict
    terr: dict
    top: np.ndarray  # (3,) sky colour at the top
    hor: np.ndarray  # (3,) sky colour at the horizon
    light: np.ndarray  # (3,) light tint of the terrain
    horizon: float  # horizon height, fraction of H from the top
    x0: float  # world offset of column 0
    cols: np.ndarray  # (W,) float64 column indices
    rows: np.ndarray  # (H,) float64 row indices
    u: np.ndarray
    v: np.ndarray
    V: np.ndarray


def _draw_scene(seed: int, H: int, W: int, row0: int = 0, n_rows: int | None = None) -> _Scene:
    """Time of day, terrain, sky colours, horizon and world offset of ``seed``; the pixel grid:
    ``n_rows`` rows (default H) from row ``row0`` of the frame of height H (the world's scale)."""
    rng = np.random.default_rng(int(seed) & ((1 << 64) - 1))
    ns = [int(s) for s in rng.integers(0, 2**31 - 1, size=24)]
    time = _TIMES[_TIME_NAMES[rng.integers(len(_TIME_NAMES))]]
    terr = _TERRAINS[_TERRAIN_NAMES[rng.integers(len(_TERRAIN_NAMES))]]
    top, hor = _jitter(rng, time["top"]), _jitter(rng, time["hor"], 0.04)
    light = _jitter(rng, time["light"], 0.04)
    horizon = rng.uniform(0.45, 0.70)
    x0 = rng.uniform(0.0, 1000.0)
    cols = np.arange(W, dtype=np.float64)
    rows = np.arange(row0, row0 + (H if n_rows is None else n_rows), dtype=np.float64)
    u = (cols + 0.5) / H + x0  # (W,)
    v = (rows + 0.5) / H  # (rows,): 0 .. 1 inside the frame
    return _Scene(H, W, rng, ns, time, terr, top, hor, light, horizon, x0, cols, rows, u, v,
                  v[:, None].astype(_F))


def _sky(s: _Scene) -> tuple[np.ndarray, float]:
    """The sky gradient with the sun's glow and disk and, at night, stars: ((H, W, 3) float32,
    the sun's world column ``sun_u``, which lights the mountains from its side)."""
    rng, time, H, W, V = s.rng, s.time, s.H, s.W, s.V
    g = (np.clip(s.v / s.horizon, 0.0, 1.0) ** rng.uniform(1.3, 2.2)).astype(_F)
    img = (s.top[None, :] * (1.0 - g[:, None]) + s.hor[None, :] * g[:, None])[:, None, :].repeat(W, axis=1)
    sun_u = s.x0 + rng.uniform(0.15, 0.85)
    sun_v = (s.horizon * rng.uniform(0.25, 0.85) if time is not _TIMES["dusk"]
             else s.horizon * rng.uniform(0.7, 0.95))
    if time["glow"] > 0 or time["disk"]:
        du = (s.u - sun_u).astype(_F)[None, :]
        r = np.sqrt(du * du + (V - sun_v) ** 2)
        glow = time["glow"] * np.exp(-r / 0.18)[..., None]
        img = img + glow * (time["sun"] - img) * 0.9
        if time["disk"]:
            disk = np.clip((0.022 - r) * H + 0.5, 0.0, 1.0)[..., None]
            img = img * (1 - disk) + time["sun"] * disk
    if time["stars"]:
        star = _hash2(s.cols[None, :].astype(np.int64) + int(s.x0 * 997), s.rows[:, None].astype(np.int64),
                      s.ns[0], _F)
        bright = np.clip((star - 0.996) / 0.004, 0.0, 1.0) * (1.0 - g[:, None])
        img = img + bright[..., None] * 0.9
    return img, sun_u


def _clouds(s: _Scene, img: np.ndarray) -> np.ndarray:
    """Clouds over the sky ``img`` (H, W, 3): horizontally stretched fBm, lit on top, shadowed
    underneath, fading out towards the horizon."""
    rng, time, u, v = s.rng, s.time, s.u, s.v
    cfx, cfy = rng.uniform(1.5, 3.0), rng.uniform(5.0, 9.0)
    lo, hi = time["cover"]
    cover = rng.uniform(lo, hi)
    cn = _fbm2(u * cfx, v * cfy, s.ns[1], octaves=5)
    cn_below = _fbm2(u * cfx, (v + 0.025) * cfy, s.ns[1], octaves=3)
    alpha = _sstep(cover, cover + 0.22, cn) * _sstep(s.horizon + 0.02, s.horizon - 0.12, s.V)
    alpha *= rng.uniform(0.75, 1.0)
    lit = np.clip(0.55 - (cn[..., None] - cn_below[..., None]) * 7.0, 0.0, 1.0)
    ccol = time["shadow"] + (time["cloud"] - time["shadow"]) * lit
    return img + alpha[..., None] * (ccol - img)


def _mountains(s: _Scene, img: np.ndarray, haze: np.ndarray, sun_u: float) -> np.ndarray:
    """1-3 ridges drawn over ``img`` from far to near: ridged fBm outlines, rock lit from the sun's
    side, optional snow caps, aerial perspective (more ``haze`` far away and near each base)."""
    rng, terr, ns, H, W, u, v, V = s.rng, s.terr, s.ns, s.H, s.W, s.u, s.v, s.V
    horizon, light = s.horizon, s.light
    n_layers = int(rng.integers(1, 4))
    max_amp = min(horizon - 0.08, horizon * rng.uniform(0.35, 0.8))
    snowy = rng.random() < terr["snow"]
    snow_level = rng.uniform(0.35, 0.7)  # fraction of the far layer's amplitude
    for k in range(n_layers):
        near = (n_layers - 1 - k)  # 0 for the nearest layer
        depth = near / max(n_layers - 1, 1) if n_layers > 1 else 0.6
        amp = max_amp * (0.45 + 0.55 * depth) * rng.uniform(0.8, 1.1)
        freq = rng.uniform(2.0, 3.5) * (0.6 + 0.8 * depth)
        lift = 0.02 * depth
        s1 = _fbm1(u * freq, ns[2 + k], octaves=6)
        s2 = _fbm1(u * freq * 0.7, ns[5 + k], octaves=6, ridged=True)
        mix = 0.3 + 0.5 * depth
        shape = (1 - mix) * s1 + mix * s2
        shape = np.clip((shape - 0.2) / 0.6, 0.0, 1.0) ** 1.3
        ridge = (horizon - lift - amp * shape).astype(_F)  # (W,)
        fog = (0.06 + 0.5 * depth) * rng.uniform(0.85, 1.1)
        base = terr["rock"] if depth > 0.3 or n_layers == 1 else terr["hill"]
        base = _jitter(rng, base, 0.05) * light
        # rocky lighting from a 2-D height field
        hf = _fbm2(u * 9.0, v * 9.0, ns[8 + k], octaves=4)
        slope = np.gradient(hf, axis=1) * H / 9.0 if W > 1 else np.zeros_like(hf)
        side = 1.0 if sun_u < s.x0 + 0.5 else -1.0
        shade = np.clip(1.0 + side * slope * (1.2 + 1.5 * depth) + (hf - 0.5) * 0.5, 0.55, 1.45)
        col = base[None, None, :] * shade[..., None]
        if snowy and depth > 0.3:
            lvl = (horizon - lift - amp * (snow_level + 0.25 * (_fbm1(u * 14.0, ns[11 + k]) - 0.5))).astype(_F)
            snow = _sstep(lvl[None, :] + 0.01, lvl[None, :] - 0.01, V)
            snow *= _sstep(0.35, 0.5, hf + 0.25 * (1 - snow_level))
            scol = np.clip(_c(0.95, 0.96, 1.0) * light * np.clip(shade, 0.75, 1.1)[..., None], 0, 1)
            col = col + snow[..., None] * (scol - col)
        # aerial perspective: more haze for far layers and near each layer's base
        fl = fog + (1.0 - fog) * 0.35 * _sstep(ridge[None, :], horizon + 0.0, V)
        col = col + np.clip(fl, 0, 0.95)[..., None] * (haze - col)
        a = np.clip((V - ridge[None, :]) * H + 0.5, 0.0, 1.0)[..., None]
        img = img + a * (col - img)
    return img


def _tree_line(s: _Scene, img: np.ndarray, haze: np.ndarray) -> np.ndarray:
    """A dark, slightly hazy band of trees along the horizon (with the terrain's probability)."""
    rng, u = s.rng, s.u
    if rng.random() < s.terr["trees"]:
        tn = _fbm1(u * 45.0, s.ns[14], octaves=3)
        tl = (s.horizon - rng.uniform(0.008, 0.02) - 0.035 * tn * _fbm1(u * 3.0, s.ns[15], octaves=2)).astype(_F)
        tcol = _jitter(rng, s.terr["tree"], 0.08) * s.light
        tcol = tcol + 0.25 * (haze - tcol)
        a = np.clip((s.V - tl[None, :]) * s.H + 0.5, 0.0, 1.0)[..., None]
        img = img + a * (tcol - img)
    return img


def _ground(s: _Scene, haze: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grass/ground below the horizon with perspective-compressed texture: ((H, W, 3) float32 over
    every row (the composite keeps the rows below the horizon), the perspective depth ``z`` (H,)
    and ``T`` (H, 1) float32, 0 at the horizon and 1 at the bottom)."""
    rng, terr, ns, H, W, light = s.rng, s.terr, s.ns, s.H, s.W, s.light
    below = max(1.0 - s.horizon, 1e-3)
    t = np.clip((s.v - s.horizon) / below, 0.0, 1.0)  # 0 at horizon, 1 at bottom
    z = 1.0 / (np.maximum((s.v - s.horizon) / below, 0.0) + 0.06)  # perspective depth (on below the frame)
    gfar = _jitter(rng, terr["gfar"], 0.06) * light
    gnear = _jitter(rng, terr["gnear"], 0.06) * light
    tw = (t ** 0.7).astype(_F)[:, None, None]
    gcol = gfar * (1 - tw) + gnear * tw  # (H, 1, 3)
    patches = _fbm2(s.u * 5.0, z * 0.9, ns[16], octaves=4)
    grain = _vnoise2(s.cols / 1.6, s.rows / 1.6, ns[17])
    blades = _vnoise2(s.cols / 1.2, s.rows / 5.0, ns[18])
    T = t.astype(_F)[:, None]
    tex = 0.75 + 0.55 * (patches - 0.5) * 1.6 + (grain - 0.5) * (0.08 + 0.25 * T) + (blades - 0.5) * 0.3 * T
    ground = np.broadcast_to(gcol, (len(s.rows), W, 3)) * tex[..., None]
    ground = ground + (0.55 * (1 - T) ** 4)[..., None] * (haze - ground)
    return ground, z, T


def _water(s: _Scene, ground: np.ndarray, above: np.ndarray, z: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Sometimes (p = 0.45) water up to a wavy shore over ``ground``, carrying a blurred, darkened,
    rippled vertical reflection of ``above`` (the image above the horizon, (H, W, 3))."""
    rng, ns, H, W, u, cols, rows, V = s.rng, s.ns, s.H, s.W, s.u, s.cols, s.rows, s.V
    if rng.random() < 0.45:
        hr = s.horizon * H  # horizon in pixel rows
        below = max(1.0 - s.horizon, 1e-3)
        shore_t = rng.uniform(0.4, 1.3)
        shore = (s.horizon + below * (shore_t + 0.25 * (_fbm1(u * 2.5, ns[19], octaves=4) - 0.5))).astype(_F)
        wmask = np.clip((shore[None, :] - V) * H + 0.5, 0.0, 1.0)
        # reflected source row (pixel centres mirror around the horizon line)
        src = 2.0 * hr - (rows + 0.5)
        ripple = (_fbm2(u * 5.0, z * 3.0, ns[20], octaves=3) - 0.5) * (1.0 + 6.0 * T) * (H / 197.0) * 3.0
        cidx = np.clip(np.rint(cols[None, :] + ripple).astype(np.int64), 0, W - 1)
        top = int(rows[0]) if len(rows) else 0   # the first rendered row (< 0: above the frame)
        ridx = np.clip(np.rint(src - 0.5).astype(np.int64), min(top, 0), max(int(np.ceil(hr)) - 1, 0))
        refl = above[np.clip(ridx - top, 0, len(rows) - 1)[:, None], cidx]
        rb = max(1, int(round(H / 90)))
        refl = _box_blur(refl, rb, axis=0)
        refl = _box_blur(refl, max(1, rb // 2), axis=1)
        wcol = _jitter(rng, _c(0.10, 0.22, 0.32), 0.1) * s.light
        fres = (0.15 + 0.45 * T)[..., None]
        water = refl * 0.78 * (1 - fres) + wcol * fres
        streak = _vnoise2(cols / 10.0, rows / 0.9, ns[21])
        water = water + (np.clip(streak - 0.72, 0, None) * 0.9 * (1 - 0.5 * T))[..., None] * (s.hor * 0.9 - water) * 0.8
        ground = ground + wmask[..., None] * (water - ground)
    return ground


def _composite(s: _Scene, img: np.ndarray, ground: np.ndarray) -> np.ndarray:
    """``ground`` below the (antialiased) horizon, ``img`` above, film grain (position-hashed so wide
    renders stay consistent), quantised to (H, W, 3) uint8."""
    a = np.clip((s.V - s.horizon) * s.H + 0.5, 0.0, 1.0)[..., None]
    img = img + a * (ground - img)
    fg = _hash2(s.cols[None, :].astype(np.int64), s.rows[:, None].astype(np.int64), s.ns[22], _F) - 0.5
    img = img + fg[..., None] * 0.025
    assert img.dtype == _F, img.dtype
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_landscape(seed: int, height: int, width: int, top: int = 0, rows: int | None = None) -> np.ndarray:
    """Render the landscape of ``seed`` as an (height, width, 3) uint8 RGB array.

    Deterministic in ``seed``; any size >= 1.  Scene scale follows ``height``: a wider
    image shows more of the same (horizontally continuing) scene. ``top`` / ``rows``: render
    ``rows`` rows (default ``height``) from row ``top`` of that frame instead, also above (top < 0)
    and below it: the sky, its clouds and the ground go on (a larger field of view; inside the
    frame the pixels are the frame's, but for the reflection's vertical blur near the render's
    edges). Returns (rows, width, 3).
    """
    H, W = int(height), int(width)
    n_rows = H if rows is None else int(rows)
    if H < 1 or W < 1 or n_rows < 1:
        raise ValueError(f"image size must be positive, got {H}x{W} ({n_rows} rows)")
    scene = _draw_scene(seed, H, W, int(top), n_rows)
    img, sun_u = _sky(scene)
    img = _clouds(scene, img)
    haze = scene.hor * 0.85 + scene.light * 0.15 * scene.hor.mean()
    img = _mountains(scene, img, haze, sun_u)
    img = _tree_line(scene, img, haze)
    ground, z, T = _ground(scene, haze)
    ground = _water(scene, ground, img, z, T)  # reflects img (read only)
    return _composite(scene, img, ground)


# --------------------------------------------------------------------------- dataset
class ProceduralLandscapes(Dataset):
    """Infinite-ish procedural dataset of full images, preprocessed like an image folder.

    Image ``i`` is rendered at ``size`` x ``size`` (its "photo", a deterministic function of
    ``(seed, i)``), then goes through the image folders' preprocessing
    (``data.preprocess_uint8``): Lanczos-resized to ``pre_resize`` when set (128 in the paper's
    main protocol), then Lanczos-resized back to ``size``. So with ``pre_resize`` the data holds
    what a 128-pixel photo holds, upsampled to the full size, as for folders.

    ``ds[i]`` -> float32 tensor (3, size, size) in [-1, 1]; ``ds.load_uint8(i)`` -> the same as
    uint8 (size, size, 3); ``ds.load_uint8(i, r)`` -> the image at size ``r`` through the same
    chain (render at ``size``, pre-resize, resize to ``r``): with ``r == pre_resize`` the
    pre-resized image itself (the evaluation's reference images). ``len(ds) == length``.
    """

    #: peak memory of rendering one image, per pixel (the process's peak RSS above its own: 148 bytes
    #: at 1024 px, 116 at 2048)
    bytes_per_pixel = 150

    def __init__(self, size: int = 197, length: int = 100_000, seed: int = 0, pre_resize: int | None = None):
        self.size = int(size)
        self.length = int(length)
        self.seed = int(seed)
        self.pre_resize = int(pre_resize) if pre_resize else None

    def __len__(self) -> int:
        return self.length

    def image_seed(self, index: int) -> int:
        """The ``render_landscape`` seed of image ``index``."""
        ss = np.random.SeedSequence([self.seed & ((1 << 63) - 1), int(index), 0x1F6A])
        return int(ss.generate_state(1, dtype=np.uint64)[0])

    def _index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        return index

    def load_uint8(self, index: int, size: int | None = None) -> np.ndarray:
        """Image ``index`` as (S, S, 3) uint8, S = ``size`` (default: the dataset's size)."""
        arr = render_landscape(self.image_seed(self._index(index)), self.size, self.size)
        out = int(size) if size else self.size
        if self.pre_resize is None and out == self.size:
            return arr
        return preprocess_uint8(Image.fromarray(arr), out, self.pre_resize)

    def __getitem__(self, index: int) -> torch.Tensor:
        arr = self.load_uint8(index)
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()
        return x.div_(127.5).sub_(1.0)
