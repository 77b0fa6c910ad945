"""Scene options of ``infinitygan generate``: --style, --resample, --cyclic, --fusion-kernel, --scene.

``register(cli)`` adds the options to the existing ``generate`` command and routes a call that
uses any of them through ``infinitygan.scene.api``; without them ``generate`` is unchanged.
"""
from __future__ import annotations

import functools
import re

import click

from ..errors import UserError
from .field import Point
from .scene import Resample, Scene, StyleCentre

_STYLE = re.compile(r"^\s*(-?\d+)\s*@\s*(-?\d+)\s*,\s*(-?\d+)\s*$")
_RESAMPLE = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*@\s*(-?\d+)\s*$")


def parse_style(text: str) -> StyleCentre:
    """'SEED@X,Y' -> a point centre with canvas SEED's global latent at pixel (X, Y)."""
    m = _STYLE.match(text)
    if not m:
        raise UserError(f"--style {text!r}: expected SEED@X,Y (e.g. 5@-600,2)")
    s, x, y = (int(v) for v in m.groups())
    return StyleCentre(Point(x, y), seed=s)


def parse_resample(text: str) -> Resample:
    """'X,Y,W,H@SEED' -> resample that pixel rectangle with SEED's local latents and noise."""
    m = _RESAMPLE.match(text)
    if not m:
        raise UserError(f"--resample {text!r}: expected X,Y,W,H@SEED (e.g. 100,-50,200,100@7)")
    x, y, w, h, s = (int(v) for v in m.groups())
    return Resample(x, y, w, h, s)


_OPTIONS = [
    click.Option(["--style", "styles"], multiple=True, metavar="SEED@X,Y",
                 help="style centre: the global latent of image SEED placed at pixel (X, Y) (repeatable; "
                      "spatial style fusion)"),
    click.Option(["--resample", "resamples"], multiple=True, metavar="X,Y,W,H@SEED",
                 help="replace the local latents and noise of a pixel rectangle by those of SEED (repeatable)"),
    click.Option(["--cyclic"], type=int, default=None, metavar="P",
                 help="periodic panorama: the image repeats every P pixels in x (a multiple of 16); "
                      "--width P is a seamless 360-degree view"),
    click.Option(["--fusion-kernel"], type=int, default=None,
                 help="mean-filter size of style fusion in pixels (odd; default 8 x lattice - 1 = 127)"),
    click.Option(["--scene", "scene_file"], type=click.Path(dir_okay=False), default=None,
                 help="YAML / JSON scene file (seed, centres, boxes, masks, zg files, resampled regions, "
                      "cyclic period, region); see docs/applications.md"),
]
_NAMES = ("styles", "resamples", "cyclic", "fusion_kernel", "scene_file")


def register(cli: click.Group) -> None:
    gen = cli.commands.get("generate")
    if gen is None or any(p.name == "scene_file" for p in gen.params):
        return
    at = next((i for i, p in enumerate(gen.params) if p.name == "out"), len(gen.params))
    gen.params[at:at] = _OPTIONS
    plain = gen.callback

    @functools.wraps(plain)
    def callback(**kw):
        opts = {k: kw.pop(k) for k in _NAMES}
        if not (opts["styles"] or opts["resamples"] or opts["cyclic"] is not None
                or opts["fusion_kernel"] is not None or opts["scene_file"]):
            return plain(**kw)
        return _generate_scene(click.get_current_context(), opts, kw)

    gen.callback = callback


def _explicit(ctx: click.Context, name: str) -> bool:
    src = ctx.get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def _generate_scene(ctx: click.Context, opts: dict, kw: dict) -> None:
    from ..api import load_model, resolve_device, resolve_dtype
    from ..io.images import check_output
    from .api import render_to_file, scene_region

    if kw.get("latents_path") is not None:
        raise UserError("--latents cannot be combined with scene options (--style, --resample, --cyclic, "
                        "--fusion-kernel, --scene)")
    if opts["scene_file"]:
        if opts["styles"] or opts["resamples"] or opts["cyclic"] is not None:
            raise UserError("--scene takes the centres, resampled regions and period from the file: "
                            "do not combine it with --style, --resample or --cyclic")
        scene = Scene.load(opts["scene_file"])
        if _explicit(ctx, "seed"):
            scene.seed = kw["seed"]
    else:
        scene = Scene(kw["seed"], [parse_style(s) for s in opts["styles"]],
                      [parse_resample(r) for r in opts["resamples"]], opts["cyclic"])
    if opts["fusion_kernel"] is not None:
        scene.kernel = opts["fusion_kernel"]
        Scene.__post_init__(scene)
    for name in ("tile", "batch", "max_memory"):
        if kw.get(name) is not None and not kw[name] > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {kw[name]}")
    resolve_dtype(kw["dtype"])
    resolve_device(kw["device"])
    model = load_model(kw["model_path"] if kw["model_path"] is not None else scene.model)
    region = scene_region(model, scene, kw["width"], kw["height"], kw["x"], kw["y"])
    check_output(kw["out"], region.width, region.height, kw.get("force", False))
    path = render_to_file(model, kw["out"], scene, region.width, region.height, region.x, region.y,
                          kw["tile"], kw["batch"], kw["device"], kw["dtype"], progress=not kw["quiet"],
                          force=kw.get("force", False), max_memory_mb=kw.get("max_memory"))
    if not kw["quiet"]:
        click.echo(f"wrote {path} ({region.width}x{region.height})", err=True)
