"""Scene options of ``infinitygan generate``: --style, --resample, --cyclic, --fusion-kernel, --scene.

``scene_options`` declares them (``generate`` applies it); ``scene_from_options`` turns what was
given into a ``Scene`` (None when no scene option was used: a plain seed).
"""
from __future__ import annotations

import re

import click

from ..errors import UserError

_STYLE = re.compile(r"^\s*(-?\d+)\s*@\s*(-?\d+)\s*,\s*(-?\d+)\s*$")
_RESAMPLE = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*@\s*(-?\d+)\s*$")


def parse_style(text: str):
    """'SEED@X,Y' -> a point centre with canvas SEED's global latent at pixel (X, Y)."""
    m = _STYLE.match(text)
    if not m:
        raise UserError(f"--style {text!r}: expected SEED@X,Y (e.g. 5@-600,2)")
    from .field import Point
    from .scene import StyleCentre

    s, x, y = (int(v) for v in m.groups())
    return StyleCentre(Point(x, y), seed=s)


def parse_resample(text: str):
    """'X,Y,W,H@SEED' -> resample that pixel rectangle with SEED's local latents and noise."""
    m = _RESAMPLE.match(text)
    if not m:
        raise UserError(f"--resample {text!r}: expected X,Y,W,H@SEED (e.g. 100,-50,200,100@7)")
    from .scene import Resample

    x, y, w, h, s = (int(v) for v in m.groups())
    return Resample(x, y, w, h, s)


_OPTIONS = [
    click.option("--style", "styles", multiple=True, metavar="SEED@X,Y",
                 help="style centre: the global latent of image SEED placed at pixel (X, Y) (repeatable; "
                      "spatial style fusion)"),
    click.option("--resample", "resamples", multiple=True, metavar="X,Y,W,H@SEED",
                 help="replace the local latents and noise of a pixel rectangle by those of SEED (repeatable)"),
    click.option("--cyclic", type=int, default=None, metavar="P",
                 help="periodic panorama: the image repeats every P pixels in x (a multiple of 16); "
                      "--width P is a seamless 360-degree view"),
    click.option("--fusion-kernel", type=int, default=None,
                 help="mean-filter size of style fusion in pixels (odd; default 8 x lattice - 1 = 127)"),
    click.option("--scene", "scene_file", type=click.Path(dir_okay=False), default=None,
                 help="YAML / JSON scene file (seed, centres, boxes, masks, zg files, resampled regions, "
                      "cyclic period, region); see docs/applications.md"),
]
NAMES = ("styles", "resamples", "cyclic", "fusion_kernel", "scene_file")


def scene_options(f):
    """The scene options of ``generate`` (keyword arguments named as in ``NAMES``)."""
    for o in reversed(_OPTIONS):
        f = o(f)
    return f


def _explicit(ctx: click.Context, name: str) -> bool:
    src = ctx.get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def scene_from_options(ctx: click.Context, seed: int, styles=(), resamples=(), cyclic=None, fusion_kernel=None,
                       scene_file=None):
    """The scene the options describe (SEED's canvas steered by them), or None without any.
    A --scene file brings its own seed unless --seed was given."""
    if not (styles or resamples or cyclic is not None or fusion_kernel is not None or scene_file):
        return None
    from .scene import Scene

    if scene_file:
        if styles or resamples or cyclic is not None:
            raise UserError("--scene takes the centres, resampled regions and period from the file: "
                            "do not combine it with --style, --resample or --cyclic")
        scene = Scene.load(scene_file)
        if _explicit(ctx, "seed"):
            scene.seed = seed
    else:
        scene = Scene(seed, [parse_style(s) for s in styles], [parse_resample(r) for r in resamples], cyclic)
    if fusion_kernel is not None:
        scene.kernel = fusion_kernel
        Scene.__post_init__(scene)
    return scene
