"""``infinitygan invert``, ``outpaint`` and ``inbetween`` (registered by ``infinitygan.cli``).

Bad input (unreadable or empty image, mask of another size, image larger than the output,
latents of another model or corrupt) raises ``UserError``: one line, exit status 2, and no
existing output is touched (outputs are written to a temporary file and renamed).
"""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..render.cli_options import options_from, render_options


def register(cli: click.Group) -> None:
    cli.add_command(invert_cmd)
    cli.add_command(outpaint_cmd)
    cli.add_command(inbetween_cmd)


def inversion_options(f):
    """The options of the inversion (Appendix K defaults), shared by invert / outpaint / inbetween."""
    from .config import InversionConfig

    d = InversionConfig()
    opts = [
        click.option("--steps", default=d.steps, show_default=True, type=int, help="optimisation steps"),
        click.option("--lr", default=d.lr, show_default=True, type=float, help="peak Adam learning rate"),
        click.option("--pixel-weight", default=d.pixel_weight, show_default=True, type=float),
        click.option("--perceptual-weight", default=d.perceptual_weight, show_default=True, type=float),
        click.option("--w-prior-weight", default=d.w_prior_weight, show_default=True, type=float,
                     help="Gaussianized-W Mahalanobis prior"),
        click.option("--zg-prior-weight", default=d.zg_prior_weight, show_default=True, type=float),
        click.option("--zl-prior-weight", default=d.zl_prior_weight, show_default=True, type=float),
        click.option("--noise-reg-weight", default=d.noise_reg_weight, show_default=True, type=float),
        click.option("--w-noise", default=d.w_noise, show_default=True, type=float,
                     help="initial annealed noise on W+ (x the spread of w)"),
        click.option("--w-samples", default=d.w_samples, show_default=True, type=int,
                     help="samples for the Gaussianized-W statistics"),
        click.option("--perceptual", default="auto", show_default=True, type=click.Choice(["auto", "lpips", "none"]),
                     help="LPIPS term: auto (when its weights are present), lpips (required) or none"),
        click.option("--lpips-net", default="vgg", show_default=True, type=click.Choice(["vgg", "alex"])),
        click.option("--lpips-weights", default=None, type=click.Path(dir_okay=False),
                     help="torchvision backbone weights (default: the torch hub cache)"),
        click.option("--mask", "mask_path", default=None, type=click.Path(dir_okay=False),
                     help="image of the known pixels (white = known); an alpha channel works too"),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, mps or auto"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def one_process(what: str, nproc: int | None = None) -> None:
    """GAN inversion runs in one process: refuse it under torchrun or ``--nproc N`` in one line
    (every rank would repeat the same optimisation)."""
    from ..parallel.env import launched

    if launched() or (nproc is not None and nproc > 1):
        raise UserError(f"{what} runs in one process: run it without torchrun or --nproc (they share the "
                        "rendering of `generate --latents` and `outpaint --latents` among ranks)")


def _config(kw: dict, seed: int):
    from .config import InversionConfig

    return InversionConfig(steps=kw["steps"], lr=kw["lr"], pixel_weight=kw["pixel_weight"],
                           perceptual_weight=kw["perceptual_weight"], w_prior_weight=kw["w_prior_weight"],
                           zg_prior_weight=kw["zg_prior_weight"], zl_prior_weight=kw["zl_prior_weight"],
                           noise_reg_weight=kw["noise_reg_weight"], w_noise=kw["w_noise"],
                           w_samples=kw["w_samples"], seed=seed)


def invert_photo(model, image: str, kw: dict, seed: int, x: int | None, y: int | None, quiet: bool,
                 period: int | None = None, region=None, device="auto"):
    """Read ``image`` (and mask), place it (at ``region``, else x / y, else the default), invert it
    on ``device``: Latents (on a cyclic canvas of ``period`` pixels when given)."""
    from ..api import resolve_device
    from .invert import Inversion
    from .perceptual import perceptual_loss
    from .target import load_target

    cfg = _config(kw, seed)
    dev = resolve_device(kw.get("device", device))
    pixels, known = load_target(image, kw["mask_path"])
    h, w = pixels.shape[:2]
    region = model.region(w, h, x, y) if region is None else region
    lp = None
    if cfg.perceptual_weight > 0:
        lp = perceptual_loss(kw["perceptual"], kw["lpips_net"], kw["lpips_weights"])
    inv = Inversion(model, cfg, lp, dev)
    return inv(pixels, region, known, progress=not quiet, source=Path(image).name, period=period)


def parse_resample(text: str):
    """'X,Y,W,H:SEED' -> ``infinitygan.scene.Resample`` (UserError otherwise)."""
    from ..scene.scene import Resample

    try:
        rect, seed = text.split(":")
        x, y, w, h = (int(v) for v in rect.split(","))
        seed = int(seed)
    except ValueError:
        raise UserError(f"--resample takes X,Y,W,H:SEED, got {text!r}") from None
    return Resample(x, y, w, h, seed)


def native_period(model, period: int) -> bool:
    """True when ``period`` pixels is a whole number of the model's horizontal coordinate periods
    (its plain coordinates are then periodic: a plain inversion serves a cyclic canvas as is)."""
    g = model.config.generator
    if g.coords.system == "object":
        return True
    return period % (g.coords.period * 2 ** g.n_up) == 0


# ==================================================================================== invert
@click.command("invert")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file (default: the bundled model)")
@click.option("--x", "x", default=None, type=int, help="canvas pixel of the image's left edge (default: centred on 0)")
@click.option("--y", "y", default=None, type=int, help="canvas pixel of the image's top edge (default: centred on the horizon)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the initial latents and the annealing noise")
@inversion_options
@click.option("--cyclic", default=None, type=int,
              help="invert on a cyclic canvas of this period (pixels), for `outpaint --latents` cyclic panoramas")
@click.option("--preview", default=None, type=click.Path(dir_okay=False), help="also write the reconstruction (.png ...)")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="latents file to write (.safetensors)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def invert_cmd(image, model_path, x, y, seed, cyclic, preview, out, quiet, **kw):
    """Recover the latents that reproduce IMAGE at (x, y) of the canvas (GAN inversion).

    The latents file renders again with `generate --latents OUT --seed S` and extends with
    `outpaint --latents OUT`.
    """
    from ..api import load_model
    from ..io.images import check_output_path, save_image
    from .latents_file import check_latents_output

    one_process("invert")
    check_latents_output(out)
    if preview is not None:
        check_output_path(preview)
    model = load_model(model_path)
    lat = invert_photo(model, image, kw, seed, x, y, quiet, period=cyclic)
    lat.save(out)
    if preview is not None:
        from .invert import Inversion

        import torch

        with torch.no_grad():
            save_image(preview, Inversion(model, _config(kw, seed)).render(lat, seed))
    r = lat.region
    msg = f"wrote {out} (image {r.width}x{r.height} at x={r.x}, y={r.y}; PSNR {lat.metrics['psnr']:.2f} dB"
    if "lpips" in lat.metrics:
        msg += f", LPIPS {lat.metrics['lpips']:.4f}"
    click.echo(msg + ")", err=quiet)


# ==================================================================================== outpaint
@click.command("outpaint")
@click.argument("photo", required=False, type=click.Path(dir_okay=False))
@click.option("--latents", "latents_path", default=None, type=click.Path(dir_okay=False),
              help="reuse an inversion (from `invert`) instead of a PHOTO")
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file (default: the bundled model)")
@click.option("--width", default=None, type=int, help="output width (pixels; default: the --cyclic period)")
@click.option("--height", required=True, type=int, help="output height (pixels)")
@click.option("--cyclic", default=None, type=int,
              help="a cyclic panorama of this period (pixels): the photo joined to itself around the circle")
@click.option("--x", "x", default=None, type=int, help="output's left pixel (default: the image centred in it)")
@click.option("--y", "y", default=None, type=int, help="output's top pixel (default: the image centred in it)")
@click.option("--image-x", default=None, type=int, help="where to place PHOTO on the canvas (default: centred on 0)")
@click.option("--image-y", default=None, type=int, help="(default: centred on the horizon)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the continuation (zl and noise outside)")
@click.option("--invert-seed", default=0, show_default=True, type=int, help="seed of the inversion of PHOTO")
@inversion_options
@click.option("--paste-back", "feather", default=None, type=int,
              help="paste the original pixels back, blended over this many pixels from their edge")
@click.option("--resample", multiple=True, metavar="X,Y,W,H:SEED",
              help="regional resampling: zl and noise of this output rectangle from another seed (repeatable)")
@click.option("--save-latents", default=None, type=click.Path(dir_okay=False), help="also save the inversion of PHOTO")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help=".png, .jpg, .tif or .npy")
@render_options(device=False)
@click.pass_context
def outpaint_cmd(ctx, photo, latents_path, model_path, width, height, cyclic, x, y, image_x, image_y, seed,
                 invert_seed, feather, resample, save_latents, out, nproc, **kw):
    """Extend a photo (or an inversion) to WIDTH x HEIGHT: the inverted latents inside, the canvas
    of SEED outside; different seeds give different continuations. Streams any size; under
    torchrun (with --latents) the ranks share the tiles."""
    from ..api import load_model
    from ..io.images import check_output
    from ..parallel.launch import relaunch
    from ..render import Job, run
    from .latents_file import check_latents_output, load_latents
    from .outpaint import LatentsSource, outpaint_region

    device = kw["device"]
    options, quiet = options_from(kw)
    if (photo is None) == (latents_path is None):
        raise UserError("give either a PHOTO or --latents FILE")
    if photo is not None:
        one_process("outpainting a PHOTO (its inversion)", nproc)
    if width is None:
        if cyclic is None:
            raise UserError("--width is required (or --cyclic PERIOD)")
        width = cyclic
    if width <= 0 or height <= 0:
        raise UserError(f"--width and --height must be positive, got {width}x{height}")
    if feather is not None and feather < 0:
        raise UserError(f"--paste-back must be >= 0, got {feather}")
    if save_latents is not None:
        check_latents_output(save_latents)
    rs = [parse_resample(t) for t in resample]

    def build() -> Job:
        model = load_model(model_path)
        if latents_path is not None:
            lat = cyclic_latents(model, load_latents(latents_path, model), cyclic, latents_path)
        else:
            from .footprint import footprint
            from .invert import check_period
            from .target import load_target

            pixels, _ = load_target(photo, kw["mask_path"])  # validate (and size-check) before inverting
            image = model.region(pixels.shape[1], pixels.shape[0], image_x, image_y)
            planned = outpaint_region(image, width, height, x, y)
            check_output(out, planned.width, planned.height, options.force)  # before the long inversion
            check_period(cyclic, footprint(model.generator.geometry, image), model.generator.geometry.lattice)
            lat = invert_photo(model, photo, kw, invert_seed, image_x, image_y, quiet, period=cyclic, device=device)
            if save_latents is not None:
                lat.save(save_latents)
        region = outpaint_region(lat.region, width, height, x, y)
        return Job(model, LatentsSource(lat, seed, region, feather, rs), region,
                   f"at x={region.x}, y={region.y}; seed {seed}")

    relaunch(ctx, nproc)  # --nproc N: this command line in N ranks (after every check: errors are said once)
    run(build, out, options, quiet)


def cyclic_latents(model, lat, cyclic: int | None, latents_path):
    """``lat`` for a cyclic panorama of period ``cyclic`` (None: as it is): a plain inversion serves
    when the period is a whole number of the model's coordinate periods, else it must have been
    inverted for that period."""
    if cyclic is None:
        return lat
    from .footprint import footprint
    from .invert import check_period

    # a period no inversion accepts is refused as such (not answered with "invert with --cyclic P")
    check_period(cyclic, footprint(model.generator.geometry, lat.region), model.generator.geometry.lattice)
    if lat.period is None and native_period(model, cyclic):
        import dataclasses

        lat = dataclasses.replace(lat, period=cyclic)  # plain coordinates are periodic here already
    if cyclic is not None and cyclic != lat.period:
        raise UserError(f"{latents_path} was inverted for period {lat.period} (invert again with --cyclic {cyclic})"
                        if lat.period else f"{latents_path} is not a cyclic inversion (invert with --cyclic {cyclic})")
    return lat


# ==================================================================================== inbetween
@click.command("inbetween")
@click.argument("left", type=click.Path(dir_okay=False))
@click.argument("right", type=click.Path(dir_okay=False))
@click.option("--distance", default=None, type=int,
              help="pixels between the facing edges of LEFT and RIGHT (required unless both are latents files)")
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file (default: the bundled model)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the canvas between and around them")
@click.option("--invert-seed", default=0, show_default=True, type=int, help="seed of the inversions")
@click.option("--width", default=None, type=int, help="output width (default: from LEFT's left edge to RIGHT's right edge)")
@click.option("--height", default=None, type=int, help="output height (default: the taller image)")
@click.option("--x", "x", default=None, type=int, help="output's left pixel (default: the pair centred in it)")
@click.option("--y", "y", default=None, type=int, help="output's top pixel (default: the pair centred in it)")
@click.option("--fusion-kernel", default=None, type=int, help="mean-filter size of the style fusion (odd; default 8 lattices - 1)")
@inversion_options
@click.option("--save-latents", default=None, help="PREFIX: also save PREFIX-left.safetensors and PREFIX-right.safetensors")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help=".png, .jpg, .tif or .npy")
@render_options(device=False)
@click.pass_context
def inbetween_cmd(ctx, left, right, distance, model_path, seed, invert_seed, width, height, x, y, fusion_kernel,
                  save_latents, out, nproc, **kw):
    """Join LEFT and RIGHT (photos or latents files of `invert`) placed DISTANCE pixels apart:
    the canvas of SEED between them, their inverted styles joined by spatial style fusion.
    Under torchrun (two latents files) the ranks share the tiles."""
    from ..api import load_model
    from ..io.images import check_output
    from ..parallel.launch import relaunch
    from ..render import Job, run
    from ..synthesis import Region
    from .inbetween import InbetweenSource, pair_region, place_pair
    from .latents_file import check_latents_output, load_latents
    from .target import load_target

    device = kw["device"]
    options, quiet = options_from(kw)
    for name, v in (("--width", width), ("--height", height)):
        if v is not None and v <= 0:
            raise UserError(f"{name} must be positive, got {v}")
    if fusion_kernel is not None and (fusion_kernel <= 0 or fusion_kernel % 2 == 0):
        raise UserError(f"--fusion-kernel must be a positive odd number, got {fusion_kernel}")
    is_lat = [Path(p).suffix.lower() == ".safetensors" for p in (left, right)]
    if not all(is_lat):
        one_process("inbetweening photos (their inversion)", nproc)
    if save_latents is not None:
        for side in ("left", "right"):
            check_latents_output(f"{save_latents}-{side}.safetensors")

    def build() -> Job:
        model = load_model(model_path)
        lats: list = [load_latents(p, model) if il else None for p, il in zip((left, right), is_lat)]
        sizes = []
        for p, lat in zip((left, right), lats):
            if lat is None:
                px, _ = load_target(p, kw["mask_path"])
                sizes.append((px.shape[1], px.shape[0]))
            else:
                sizes.append((lat.region.width, lat.region.height))
        if all(is_lat):
            gap = lats[1].region.x - lats[0].region.x - lats[0].region.width
            if distance is not None and distance != gap:
                raise UserError(f"the two latents files lie {gap} pixels apart, not --distance {distance}")
            regions = [lats[0].region, lats[1].region]
        else:
            if distance is None:
                raise UserError("--distance is required")
            a, b = place_pair(model, sizes[0], sizes[1], distance)
            if lats[0] is not None:
                b = Region(lats[0].region.x + lats[0].region.width + distance, b.y, b.width, b.height)
                a = lats[0].region
            elif lats[1] is not None:
                a = Region(lats[1].region.x - distance - a.width, a.y, a.width, a.height)
                b = lats[1].region
            regions = [a, b]
        span = pair_region(*regions)
        w = span.width if width is None else width
        h = span.height if height is None else height
        region = Region(span.x - (w - span.width) // 2 if x is None else x,
                        span.y - (h - span.height) // 2 if y is None else y, w, h)
        if not all(is_lat):
            check_output(out, region.width, region.height, options.force)  # before the long inversions
        for i, (p, r) in enumerate(zip((left, right), regions)):
            if lats[i] is None:
                lats[i] = invert_photo(model, p, kw, invert_seed, None, None, quiet, region=r, device=device)
                if save_latents is not None:
                    lats[i].save(f"{save_latents}-{('left', 'right')[i]}.safetensors")
        return Job(model, InbetweenSource(lats, seed, fusion_kernel), region,
                   f"at x={region.x}, y={region.y}; images at x={regions[0].x} and x={regions[1].x}")

    relaunch(ctx, nproc)  # --nproc N: this command line in N ranks (after every check: errors are said once)
    run(build, out, options, quiet)
