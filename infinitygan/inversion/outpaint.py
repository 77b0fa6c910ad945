"""Outpainting from inverted latents (paper Section 4.3, Appendix K), streamed by the normal engine.

The canvas of seed S supplies zl and noise everywhere; the inverted zl and noise windows are
pasted over it; zg and the W+ styles are the inverted ones everywhere. The output region is then
rendered band by band by ``Synthesizer.bands`` (bounded memory at any width) and written by the
streaming writers. Different seeds give different continuations, and the inverted region is
the same for every seed (its pixels read nothing but the latents file).

Optional:
* paste-back: the original known pixels blended over the output with a feathered edge
  (weight ramps from 0 at the boundary of the known area to 1 at ``feather`` pixels inside);
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError
from ..io.images import check_output_path, write_bands
from ..latents import Canvas
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


def outpaint_canvas(lat: Latents, seed: int) -> Canvas:
    """Canvas of ``seed`` with the inverted latents pasted over it."""
    return lat.canvas(seed)


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


def paste_back(bands: Iterable[tuple[int, np.ndarray]], region: Region, lat: Latents,
               feather: int) -> Iterator[tuple[int, np.ndarray]]:
    """Blend the stored original pixels over the bands (float32 [-1, 1]) where they intersect."""
    if lat.target is None:
        raise UserError("this latents file holds no image to paste back")
    img = lat.target.astype(np.float32) / 127.5 - 1.0
    mask = lat.mask if lat.mask is not None else np.ones(img.shape[:2], np.uint8)
    alpha = feather_weights(mask, feather)[..., None]
    ir = lat.region
    for y0, band in bands:
        top, bottom = region.y + y0, region.y + y0 + band.shape[0]
        r0, r1 = max(top, ir.y), min(bottom, ir.y + ir.height)
        c0, c1 = max(region.x, ir.x), min(region.x + region.width, ir.x + ir.width)
        if r0 < r1 and c0 < c1:
            dst = band[r0 - top: r1 - top, c0 - region.x: c1 - region.x]
            a = alpha[r0 - ir.y: r1 - ir.y, c0 - ir.x: c1 - ir.x]
            src = img[r0 - ir.y: r1 - ir.y, c0 - ir.x: c1 - ir.x]
            dst *= 1.0 - a
            dst += a * src
        yield y0, band


def outpaint_bands(model, lat: Latents, seed: int, region: Region, tile=None, batch=None, device=None,
                   dtype="float32", progress: bool = False, feather: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Bands of the outpainted region (see ``Synthesizer.bands``); paste-back when feather is not None."""
    synth = model.synthesizer(device, dtype)
    canvas = outpaint_canvas(lat, seed)
    bands = synth.bands(canvas, region, tile, batch, progress, styles=lat.styles[None])
    return paste_back(bands, region, lat, feather) if feather is not None else bands


def outpaint_to_file(path: str | Path, model, lat: Latents, seed: int, region: Region, **kw) -> Path:
    """Stream the outpainted region to an image file (atomic; .png, .tif, .npy, .jpg)."""
    path = check_output_path(path)
    return write_bands(path, region.width, region.height, outpaint_bands(model, lat, seed, region, **kw))


def outpaint(model, lat: Latents, seed: int, region: Region, **kw) -> np.ndarray:
    """The outpainted region as float32 (H, W, 3)."""
    out = np.empty((region.height, region.width, 3), np.float32)
    for y, band in outpaint_bands(model, lat, seed, region, **kw):
        out[y: y + band.shape[0]] = band
    return out
