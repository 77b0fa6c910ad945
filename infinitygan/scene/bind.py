"""Bind a ``Scene`` to a generator: its canvas and its fusion (styles resolved on a device)."""
from __future__ import annotations

import torch

from ..errors import UserError
from ..latents import Canvas
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
