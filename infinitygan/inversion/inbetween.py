"""Inbetweening (paper Section 4.3, Appendix K, Figure 10): two inverted images placed any
distance apart on one canvas, joined by the generator.

zl and noise between (and around) them come from the canvas of a seed; each image's own zl and
noise windows are pasted at its place; zg and W+ are joined by spatial style fusion, the one
mechanism of ``infinitygan.scene`` (a style field with a point centre at each image's middle,
nearest-centre one-hot map smoothed by the mean filter, per-layer calibration), here with the
inverted zg and W+ of each image as the two styles.

An image is reproduced exactly when its whole footprint lies in its own style's one-hot area,
i.e. when the images are farther apart than about twice (kernel radius + GS margin); closer
images are still joined, with their facing edges blended.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..latents import Canvas
from ..render.options import RenderOptions
from ..synthesis import Region
from .latents_file import Latents


def place_pair(model, left: tuple[int, int], right: tuple[int, int], distance: int) -> tuple[Region, Region]:
    """Regions of two images (width, height) ``distance`` pixels apart (gap between the facing
    edges), the pair centred on x = 0, each centred on the horizon."""
    if distance < 0:
        raise UserError(f"--distance must be >= 0, got {distance}")
    total = left[0] + distance + right[0]
    lat = 2 ** model.config.generator.n_up
    x0 = lat * round(-total / 2 / lat)
    a = model.region(left[0], left[1], x0, None)
    b = model.region(right[0], right[1], x0 + left[0] + distance, None)
    return a, b


def pair_region(a: Region, b: Region) -> Region:
    """The smallest region holding both images."""
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
    return Region(x0, y0, x1 - x0, y1 - y0)


def inbetween_fusion(generator, lats: list[Latents], kernel: int | None = None, device="cpu",
                     dtype=torch.float32):
    """The scene room's ``Fusion`` of the images' inverted (zg, W+), one point centre per image."""
    from ..scene.bind import default_kernel
    from ..scene.calibration import Calibration
    from ..scene.field import Point, StyleField
    from ..scene.fusion import Fusion

    geo = generator.geometry
    places = [Point(l.region.x + l.region.width // 2, l.region.y + l.region.height // 2) for l in lats]
    if len({(p.x, p.y) for p in places}) < len(places):
        raise UserError("two images share the same centre: place them apart")
    field = StyleField(places, list(range(len(lats))), None, kernel or default_kernel(geo.lattice))
    zg = torch.stack([l.zg for l in lats]).to(device=device, dtype=dtype)
    wplus = torch.stack([l.styles for l in lats]).to(device=device, dtype=dtype)
    rgb_slots = [generator.texture.rgb_slot(k) for k in range(geo.n_up)]
    return Fusion(field, Calibration(geo), zg, wplus, rgb_slots)


def inbetween_canvas(synth, lats: list[Latents], seed: int, kernel: int | None = None) -> Canvas:
    """Canvas of ``seed`` with every image's zl and noise pasted at its place (later images win
    where footprints overlap) and the fusion of their styles."""
    if any(l.period for l in lats):
        raise UserError("inbetweening takes inversions on the plain canvas (not --cyclic ones)")
    canvas = Canvas(int(seed), lats[0].zg.shape[0], lats[0].zl.shape[0], global_latent=lats[0].zg.clone())
    for l in lats:
        l.paste(canvas)
    canvas.fusion = inbetween_fusion(synth.generator, lats, kernel, synth.device, synth.dtype)
    return canvas


class InbetweenSource:
    """Two (or more) inversions joined on the canvas of ``seed`` as a canvas source of the render
    pipeline (``infinitygan.render``): ``inbetween_canvas`` bound to each synthesizer."""

    def __init__(self, lats: list[Latents], seed: int, kernel: int | None = None):
        self.lats, self.seed, self.kernel = lats, int(seed), kernel

    def canvas(self, synth) -> Canvas:
        return inbetween_canvas(synth, self.lats, self.seed, self.kernel)

    def styles(self) -> None:
        return None

    def post(self, region: Region) -> None:
        return None


def inbetween(model, lats: list[Latents], seed: int, region: Region, kernel: int | None = None,
              options: RenderOptions | None = None, **settings) -> np.ndarray:
    """The joined images over ``region`` as float32 (H, W, 3). ``options`` / ``settings``: see
    ``RenderOptions``."""
    from ..render.pipeline import render_array

    return render_array(model, InbetweenSource(lats, seed, kernel), region, RenderOptions.of(options, **settings))


def inbetween_to_file(path: str | Path, model, lats: list[Latents], seed: int, region: Region,
                      kernel: int | None = None, options: RenderOptions | None = None, **settings) -> Path:
    """Stream the joined images over ``region`` to an image file (atomic) through the render
    pipeline, like ``generate``. ``options`` / ``settings``: see ``RenderOptions``."""
    from ..render.pipeline import render_to_file

    return render_to_file(model, path, InbetweenSource(lats, seed, kernel), region,
                          RenderOptions.of(options, **settings))
