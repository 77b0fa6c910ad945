"""Python API of scenes.

    import infinitygan as ig
    from infinitygan.scene import Scene, StyleCentre, Point, Box, Resample, render, render_to_file

    model = ig.load_model()
    scene = Scene(seed=3, centres=[StyleCentre(Point(-800, 2), seed=1), StyleCentre(Point(800, 2), seed=2)])
    img = render(model, scene, width=2048, height=256)          # float32 (H, W, 3)
    render_to_file(model, "pano.png", Scene(seed=3, cyclic=2224), width=2224, height=256)
    render_to_file(model, "out.png", Scene.load("scene.yaml"))  # region from the file

The pixels depend on the scene and the region only (not on tile, batch or device beyond
floating-point rounding), exactly like plain synthesis.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..render.options import RenderOptions
from ..tiling import Region
from .bind import bind_scene
from .scene import Scene


def scene_region(model, scene: Scene, width: int | None = None, height: int | None = None,
                 x: int | None = None, y: int | None = None) -> Region:
    """The region to render: explicit values, else the scene's region, else the model's defaults
    (a cyclic scene defaults to one period, 256 pixels high)."""
    if scene.region is not None:
        sx, sy, sw, sh = scene.region
        width = sw if width is None else width
        height = sh if height is None else height
        x = sx if x is None else x
        y = sy if y is None else y
    if width is None:
        width = scene.cyclic if scene.cyclic is not None else 2048
    if height is None:
        height = 256
    if int(width) <= 0 or int(height) <= 0:
        raise UserError(f"width and height must be positive, got {width}x{height}")
    return model.region(int(width), int(height), x, y)


def render(model, scene: Scene, width: int | None = None, height: int | None = None, x: int | None = None,
           y: int | None = None, options: RenderOptions | None = None, **settings) -> np.ndarray:
    """Region of the scene's image as float32 (height, width, 3). ``options`` / ``settings``: see
    ``RenderOptions`` (tile, batch, device, dtype, max_memory_mb, progress)."""
    from ..render.pipeline import render_array

    options = RenderOptions.of(options, **settings)
    return render_array(model, SceneSource(scene), scene_region(model, scene, width, height, x, y), options)


class SceneSource:
    """A scene as a canvas source of the render pipeline (``infinitygan.render``): its canvas is
    bound to each synthesizer (style fusion on its device and dtype)."""

    def __init__(self, scene: Scene):
        self.scene = scene

    def canvas(self, synth):
        return bind_scene(self.scene, synth)

    def styles(self) -> None:
        return None

    def post(self, region: Region) -> None:
        return None


def render_to_file(model, path: str | Path, scene: Scene, width: int | None = None, height: int | None = None,
                   x: int | None = None, y: int | None = None, options: RenderOptions | None = None,
                   **settings) -> Path:
    """Stream the scene's region to an image file (.png, .jpg, .tif, .npy) in bounded memory,
    through the render pipeline (everything refusable is refused before synthesis; in a
    torch.distributed group, call it on every rank). ``options`` / ``settings``: see
    ``RenderOptions``."""
    from ..render.pipeline import render_to_file as pipeline_render_to_file

    region = scene_region(model, scene, width, height, x, y)
    return pipeline_render_to_file(model, path, SceneSource(scene), region, RenderOptions.of(options, **settings))
