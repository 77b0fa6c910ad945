"""Outpainting from inverted latents (paper Section 4.3, Appendix K), streamed by the normal engine.

The canvas of seed S supplies zl and noise everywhere; the inverted zl and noise windows are
pasted over it; zg and the W+ styles are the inverted ones everywhere. The output region is then
rendered tile by tile by ``Synthesizer.tiles`` (bounded memory at any width) and written by the
streaming writers (``render.pipeline``: one process or torchrun ranks). Different seeds give different continuations, and the inverted region is
the same for every seed (its pixels read nothing but the latents file).

Optional:
* paste-back: the original known pixels blended over the output with a feathered edge
  (weight ramps from 0 at the boundary of the known area to 1 at ``feather`` pixels inside);
"""
from __future__ import annotations

from pathlib import Path
import numpy as np

from ..errors import UserError
from ..latents import Canvas
from ..render.options import RenderOptions
from ..synthesis import Region
from .latents_file import Latents


def outpaint_region(image: Region, width: int, height: int, x: int | None = None,
                    y: int | None = None) -> Region:
    """The output region: width x height, by default with the image centred in it."""
    if width <= 0 or height <= 0:
        raise UserError(f"--width and --height must be positive, got {width}x{height}")
    if width < image.width or height < image.height:
        raise UserError(f"the image ({image.width}x{image.height}) is larger than the requested output "
                        f"({width}x{height})")
    x = image.x - (width - image.width) // 2 if x is None else int(x)
    y = image.y - (height - image.height) // 2 if y is None else int(y)
    return Region(x, y, int(width), int(height))


def outpaint_canvas(lat: Latents, seed: int, region: Region, generator=None, resample=()) -> Canvas:
    """Canvas of ``seed`` with the inverted latents pasted over it (on a cyclic inversion, once
    per period across ``region``). ``resample``: ``infinitygan.scene.Resample`` rectangles whose
    zl and noise come from other seeds (the scene room's regional resampling; the inverted
    latents still win over their own footprint)."""
    if not resample:
        return lat.canvas(seed, region)
    from ..scene.bind import build_canvas
    from ..scene.scene import Scene

    canvas = build_canvas(Scene(seed=int(seed), resample=list(resample), cyclic=lat.period), generator)
    canvas.global_latent = lat.zg.clone()
    lat.paste(canvas, region)
    return canvas


def feather_weights(mask: np.ndarray, feather: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 0 outside the known pixels, ramping to 1 at ``feather`` pixels
    from the boundary of the known area (the image border counts as boundary); feather 0: hard."""
    known = np.asarray(mask) > 0
    if feather <= 0:
        return known.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    padded = np.pad(known, 1)
    dist = distance_transform_edt(padded)[1:-1, 1:-1]  # 1 at pixels next to the boundary
    return np.clip(dist / float(feather), 0.0, 1.0).astype(np.float32) * known


def paste_back(tiles, region: Region, lat: Latents, feather: int):
    """Blend the stored original pixels over the tiles (float32 [-1, 1]) where they intersect."""
    if lat.target is None:
        raise UserError("this latents file holds no image to paste back")
    img = lat.target.astype(np.float32) / 127.5 - 1.0
    mask = lat.mask if lat.mask is not None else np.ones(img.shape[:2], np.uint8)
    alpha = feather_weights(mask, feather)[..., None]
    ir = lat.region
    for t, px in tiles:
        r0, r1 = max(t.y0, ir.y), min(t.y1, ir.y + ir.height)
        c0, c1 = max(t.x0, ir.x), min(t.x1, ir.x + ir.width)
        if r0 < r1 and c0 < c1:
            dst = px[r0 - t.y0: r1 - t.y0, c0 - t.x0: c1 - t.x0]
            a = alpha[r0 - ir.y: r1 - ir.y, c0 - ir.x: c1 - ir.x]
            src = img[r0 - ir.y: r1 - ir.y, c0 - ir.x: c1 - ir.x]
            dst *= 1.0 - a
            dst += a * src
        yield t, px


class LatentsSource:
    """Inverted latents on the canvas of ``seed`` as a canvas source of the render pipeline
    (``infinitygan.render``): the canvas of ``outpaint_canvas`` for ``region``, the inverted W+
    styles, and the paste-back of the known pixels when ``feather`` is not None."""

    def __init__(self, lat: Latents, seed: int, region: Region, feather: int | None = None, resample=()):
        if feather is not None and feather < 0:
            raise UserError(f"--paste-back must be >= 0, got {feather}")
        if feather is not None and lat.target is None:
            raise UserError("this latents file holds no image to paste back")
        self.lat, self.seed, self.region, self.feather, self.resample = lat, int(seed), region, feather, tuple(resample)

    def canvas(self, synth) -> Canvas:
        return outpaint_canvas(self.lat, self.seed, self.region, synth.generator, self.resample)

    def styles(self):
        return self.lat.styles[None]

    def post(self, region: Region):
        if self.feather is None:
            return None
        return lambda tiles: paste_back(tiles, region, self.lat, self.feather)


def latents_job(model_path, seed: int, width: int | None, height: int | None, x: int | None, y: int | None,
                latents_path):
    """The render job of ``generate --latents FILE``: the canvas of SEED with the file's latents over
    the region (default: the image's own; a larger one is centred on it)."""
    from ..api import load_model
    from ..render import Job
    from .latents_file import load_latents

    model = load_model(model_path)
    lat = load_latents(latents_path, model)
    r = lat.region
    width = r.width if width is None else width
    height = r.height if height is None else height
    region = Region(r.x - (width - r.width) // 2 if x is None else x,
                    r.y - (height - r.height) // 2 if y is None else y, width, height)
    return Job(model, LatentsSource(lat, seed, region), region, f"at x={region.x}, y={region.y}")


def outpaint_to_file(path: str | Path, model, lat: Latents, seed: int, region: Region, feather: int | None = None,
                     resample=(), options: RenderOptions | None = None, **settings) -> Path:
    """Stream the outpainted region to an image file (atomic; .png, .tif, .npy, .jpg) through the
    render pipeline (in a torch.distributed group, call it on every rank); paste-back when
    feather is not None. ``options`` / ``settings``: see ``RenderOptions``."""
    from ..render.pipeline import render_to_file

    return render_to_file(model, path, LatentsSource(lat, seed, region, feather, resample), region,
                          RenderOptions.of(options, **settings))


def outpaint(model, lat: Latents, seed: int, region: Region, feather: int | None = None, resample=(),
             options: RenderOptions | None = None, **settings) -> np.ndarray:
    """The outpainted region as float32 (H, W, 3). ``options`` / ``settings``: see ``RenderOptions``."""
    from ..render.pipeline import render_array

    return render_array(model, LatentsSource(lat, seed, region, feather, resample), region,
                        RenderOptions.of(options, **settings))
