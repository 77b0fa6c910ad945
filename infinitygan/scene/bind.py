"""Bind a ``Scene`` to a generator: its canvas and its fusion (styles resolved on a device)."""
from __future__ import annotations

import torch

from ..errors import UserError
from ..latents import Canvas, Reseed
from .calibration import Calibration
from .field import Point, StyleField
from .fusion import Fusion
from .scene import Scene


def default_kernel(lattice: int) -> int:
    """The mean filter's default size: 8 lattices - 1 pixels (the paper's 127 at 16-pixel lattices)."""
    return 8 * lattice - 1


def build_fusion(scene: Scene, generator, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Fusion | None:
    """The scene's style fusion on a generator, or None when the whole plane has one style."""
    if not scene.centres:
        return None
    cfg, geo = generator.cfg, generator.geometry
    if geo.padded:
        raise UserError("spatial style fusion needs a padding-free generator (not the stylegan2-nci baseline)")
    if scene.cyclic is not None and scene.cyclic % geo.lattice:
        raise UserError(f"the cyclic period must be a multiple of the model's lattice ({geo.lattice} px)")
    keys: dict = {}
    vectors: list[torch.Tensor] = []

    def label(seed: int | None, zg: torch.Tensor | None) -> int:
        if zg is None:
            key = ("seed", int(seed))
            if key not in keys:
                keys[key] = len(vectors)
                vectors.append(Canvas(int(seed), cfg.zg_dim, cfg.zl_dim).zg()[0])
            return keys[key]
        if zg.numel() != cfg.zg_dim:
            raise UserError(f"a zg vector has {zg.numel()} values, the model's zg_dim is {cfg.zg_dim}")
        key = ("zg", zg.float().numpy().tobytes())
        if key not in keys:
            keys[key] = len(vectors)
            vectors.append(zg.float().reshape(-1))
        return keys[key]

    labels = [label(c.seed, c.zg) for c in scene.centres]
    has_points = any(isinstance(c.place, Point) for c in scene.centres)
    background = None if has_points else label(scene.seed, None)
    if len(vectors) == 1 and (has_points or background == labels[0]) and labels[0] == keys.get(("seed", scene.seed)):
        return None  # one style, the canvas's own: plain synthesis
    kernel = scene.kernel if scene.kernel is not None else default_kernel(geo.lattice)
    fld = StyleField([c.place for c in scene.centres], labels, background, kernel, scene.cyclic)
    with torch.no_grad():
        zg = torch.stack(vectors).to(device=device, dtype=dtype)
        gen_dev = next(generator.parameters())
        wplus = generator.styles(zg.to(device=gen_dev.device, dtype=gen_dev.dtype)).to(device=device, dtype=dtype)
    rgb_slots = [generator.texture.rgb_slot(k) for k in range(geo.n_up)]
    return Fusion(fld, Calibration(geo), zg, wplus, rgb_slots)


def build_canvas(scene: Scene, generator) -> Canvas:
    """The scene's canvas: local latents and noise of ``scene.seed``, its resampled regions and
    period, on the generator's lattices."""
    cfg, geo = generator.cfg, generator.geometry
    period = None
    if scene.cyclic is not None:
        if geo.padded:
            raise UserError("cyclic panoramas need a padding-free generator (not the stylegan2-nci baseline)")
        if scene.cyclic % geo.lattice or scene.cyclic < 2 * geo.lattice:
            raise UserError(f"the cyclic period must be a multiple of the model's lattice ({geo.lattice} px) "
                            f"and at least {2 * geo.lattice} px, got {scene.cyclic}")
        period = scene.cyclic // geo.lattice
    cal = Calibration(geo)
    reseeds = []
    for i, a in enumerate(scene.resample):
        if scene.cyclic is not None and a.width > scene.cyclic:
            raise UserError(f"resampled region {i + 1} is wider ({a.width} px) than the cyclic period {scene.cyclic}")
        for j, b in enumerate(scene.resample[:i]):
            if _rects_overlap(a, b, scene.cyclic):
                raise UserError(f"resampled regions {j + 1} and {i + 1} overlap; overlapping definitions cannot be resolved")
        ranges = []
        for lev in range(geo.n_up + 1):
            r0, r1 = cal.index_range(lev, a.y, a.y + a.height)
            c0, c1 = cal.index_range(lev, a.x, a.x + a.width)
            ranges.append((r0, r1, c0, c1))
        reseeds.append(Reseed(int(a.seed), tuple(ranges)))
    return Canvas(int(scene.seed), cfg.zg_dim, cfg.zl_dim, period=period, reseeds=reseeds)


def _rects_overlap(a, b, period: int | None) -> bool:
    if a.y + a.height <= b.y or b.y + b.height <= a.y:
        return False
    if period is None:
        return a.x < b.x + b.width and b.x < a.x + a.width
    start = (b.x - a.x) % period  # b's start, from a's start, around the circle
    return start < a.width or start + b.width > period


def bind_scene(scene: Scene, synth) -> Canvas:
    """The canvas of a scene for a ``Synthesizer``, with its fusion (if any) on the synthesizer's
    device and dtype."""
    canvas = build_canvas(scene, synth.generator)
    canvas.fusion = build_fusion(scene, synth.generator, synth.device, synth.dtype)
    return canvas
