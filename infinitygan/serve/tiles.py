"""Map tiles of the infinite image: the tile grid, batched rendering, encoding.

Tile (z, x, y) of a seed covers the native pixels [x S, (x + 1) S) x [y S, (y + 1) S) with
S = ``tile_px`` * 2^z: z = 0 is native resolution, z = 1 .. ``max_zoom`` are zoomed out by 2^z
(rendered from the S x S region and box-downsampled, so a tile costs 4^z native tiles: the
zoom-out is bounded to keep one tile cheap). Valid tiles lie within the supported range of x
(|pixel| <= ``x_limit``) and intersect the meaningful band of rows [-band, band) around the
horizon (further away the vertical coordinate is saturated and the image just repeats sky or
ground).

``TileRenderer.render`` takes many tile keys at once and runs them through shared GT forwards:
keys are grouped by (seed, zoom, scene), every group's regions are planned by the synthesizer's
planner with one tile size (so all their engine tiles share one window size) and forwarded
``batch`` at a time across regions (``planning.batches``) through ``Synthesizer.forward_tiles``.
Pixels are those of any other render of the same region.
"""
from __future__ import annotations

import hashlib
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..io.images import to_uint8
from ..planning import batches, default_tile_batch
from ..render.options import RenderOptions
from ..synthesis import Region

#: map tile size in pixels (Leaflet's default)
TILE_PX = 256
#: most zoomed-out level accepted by the server (a tile at z renders (256 * 2^z)^2 pixels)
MAX_ZOOM_LIMIT = 5
#: supported horizontal range of native pixels (the canvas is exact far beyond; JavaScript map
#: coordinates are exact to 2^53)
X_LIMIT = 2 ** 40
#: largest seed accepted (JavaScript's exact integers, so links stay exact)
SEED_LIMIT = 2 ** 53 - 1

FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"), "jpg": ("JPEG", "image/jpeg"),
           "jpeg": ("JPEG", "image/jpeg")}


@dataclass(frozen=True)
class TileKey:
    """One map tile. scene: id of a scene (style centres, resampled regions), "" for the plain image."""

    seed: int
    z: int
    x: int
    y: int
    scene: str = ""

    @property
    def group(self) -> tuple[int, int, str]:
        return self.seed, self.z, self.scene


def default_band(model) -> int:
    """Half height (pixels) of the meaningful band: twice the distance from the horizon at which
    the vertical coordinate saturates (|tanh| > 0.999), in whole map tiles, at least 2 tiles."""
    g = model.config.generator
    step = getattr(g.coords, "vertical_step", 0.0) or 0.0
    if g.coords.system != "scenery" or step <= 0:
        return 4 * TILE_PX
    cells = math.atanh(0.999) / step
    px = 2 * cells * 2 ** g.n_up
    return max(2, math.ceil(px / TILE_PX)) * TILE_PX


def model_fingerprint(model) -> str:
    """A digest of the model's weights and config (part of every ETag)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(model.config).encode())
    for name, t in sorted(model.generator.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def encode(img: np.ndarray, fmt: str) -> bytes:
    """uint8 (H, W, 3) -> image file bytes (deterministic for given pixels)."""
    from PIL import Image

    pil_fmt = FORMATS[fmt][0]
    buf = io.BytesIO()
    opts = {"PNG": {"compress_level": 6}, "WEBP": {"quality": 90, "method": 4},
            "JPEG": {"quality": 90}}[pil_fmt]
    Image.fromarray(img).save(buf, format=pil_fmt, **opts)
    return buf.getvalue()


def downsample(img: np.ndarray, f: int) -> np.ndarray:
    """Box-filter float (H, W, 3) by an integer factor f (H, W multiples of f)."""
    if f == 1:
        return img
    H, W, C = img.shape
    return img.reshape(H // f, f, W // f, f, C).mean(axis=(1, 3), dtype=np.float32)


class TileRenderer:
    """Renders map tiles of a model with shared forwards.

    options: the ``RenderOptions`` (device, dtype; ``tile``: the engine tile size inside
    zoomed-out tiles, default the device's largest, 512 pixels on CPU, 1024 on CUDA). max_zoom:
    most zoomed-out level (0 .. MAX_ZOOM_LIMIT). band: half height of the valid rows (pixels;
    default ``default_band``). batch_pixels: pixels per GT forward (the batch is batch_pixels /
    engine tile area). scenes: optional callable (seed, scene id) -> (canvas, zg, styles) for
    scene tiles; the extension point of style fusion.
    """

    def __init__(self, model, options: RenderOptions | None = None, max_zoom: int = 2, band: int | None = None,
                 batch_pixels: int = 1 << 20, scenes=None):
        if not 0 <= max_zoom <= MAX_ZOOM_LIMIT:
            raise ValueError(f"max_zoom must be in 0..{MAX_ZOOM_LIMIT}")
        options = options or RenderOptions()
        self.model = model
        self.synth = options.synthesizer(model)
        self.max_zoom = int(max_zoom)
        self.band = default_band(model) if band is None else int(band)
        planner = self.synth.planner
        self.render_tile = planner.tile_size(options.tile if options.tile is not None
                                             else default_tile_batch(planner.device_type)[0])
        self.batch_pixels = int(batch_pixels)
        self.scenes = scenes
        self.fingerprint = model_fingerprint(model)
        self._styles: OrderedDict[tuple[int, str], tuple] = OrderedDict()
        self._lock = threading.Lock()  # one render at a time (the engine is not re-entrant)
        self.forwards = 0  # GT forwards run (batches), for tests and statistics
        self.tiles_rendered = 0

    # ---- the grid ------------------------------------------------------------------------
    def span(self, z: int) -> int:
        """Native pixels per side of a tile at zoom z."""
        return TILE_PX << z

    def check(self, key: TileKey) -> str | None:
        """Why the tile does not exist (None if it does)."""
        if not 0 <= key.seed <= SEED_LIMIT:
            return f"seed must be in 0..{SEED_LIMIT}"
        if not 0 <= key.z <= self.max_zoom:
            return f"zoom must be in 0..{self.max_zoom}"
        S = self.span(key.z)
        if key.x * S < -X_LIMIT or (key.x + 1) * S > X_LIMIT:
            return f"x is outside the supported range (|pixel| <= 2^{X_LIMIT.bit_length() - 1})"
        if (key.y + 1) * S <= -self.band or key.y * S >= self.band:
            return f"y is outside the band of rows [-{self.band}, {self.band})"
        return None

    def etag(self, key: TileKey, fmt: str) -> str:
        """Strong ETag: the same model, engine settings and key always give the same bytes."""
        import PIL

        from .. import __version__

        text = "|".join(map(str, (self.fingerprint, __version__, torch.__version__, PIL.__version__,
                                  self.synth.device.type, self.synth.dtype, self.render_tile, key.seed, key.z,
                                  key.x, key.y, key.scene, fmt)))
        return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'

    # ---- rendering -----------------------------------------------------------------------
    def _canvas_styles(self, seed: int, scene: str, definition: dict | None = None):
        k = (seed, scene)
        if k in self._styles:
            self._styles.move_to_end(k)
            return self._styles[k]
        if scene:
            value = self.scenes(seed, scene) if definition is None else self.scenes(seed, scene, definition)
        else:
            canvas = self.model.canvas(seed)
            with torch.inference_mode():
                zg, styles = self.synth.styles(canvas)
            value = canvas, zg, styles
        self._styles[k] = value
        while len(self._styles) > 64:
            self._styles.popitem(last=False)
        return value

    def render(self, keys: list[TileKey], scenes: dict | None = None) -> list[np.ndarray]:
        """uint8 (TILE_PX, TILE_PX, 3) images of the keys (valid ones), in order. ``scenes``:
        {(seed, scene id): definition} taken by the requests (see ``SceneStore.get``)."""
        out: list[np.ndarray | None] = [None] * len(keys)
        groups: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k.group, []).append(i)
        planner = self.synth.planner
        with self._lock, torch.inference_mode():
            for (seed, z, scene), idx in groups.items():
                canvas, zg, styles = self._canvas_styles(seed, scene, (scenes or {}).get((seed, scene)))
                S = self.span(z)
                T = min(S, self.render_tile)
                batch = max(1, self.batch_pixels // (T * T))
                bufs = {i: np.empty((S, S, 3), np.float32) for i in idx}
                # one plan per key, all with one window size; GS per tile, forwards across keys
                plans = [planner.render_plan(planner.tile_plan(Region(keys[i].x * S, keys[i].y * S, S, S), T), batch,
                                             shared_structure=False) for i in idx]
                for part in batches(plans):
                    img = self.synth.forward_tiles(canvas, [t for _, t in part], zg, styles)
                    img = img.float().cpu().numpy()
                    self.forwards += 1
                    for (n, t), px in zip(part, img):
                        i = idx[n]
                        k = keys[i]
                        h, w = t.y1 - t.y0, t.x1 - t.x0
                        piece = px[:, t.oy: t.oy + h, t.ox: t.ox + w].transpose(1, 2, 0)
                        bufs[i][t.y0 - k.y * S: t.y1 - k.y * S, t.x0 - k.x * S: t.x1 - k.x * S] = piece
                for i in idx:
                    out[i] = to_uint8(downsample(bufs.pop(i), 1 << z))
                    self.tiles_rendered += 1
        return out  # type: ignore[return-value]
