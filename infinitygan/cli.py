"""The ``infinitygan`` command line (also ``python -m infinitygan``).

Bad input is reported as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import sys
import warnings

import click

from .errors import LostPeer, UserError
from .render.cli_options import options_from, render_options
from .scene.cli import scene_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """InfinityGAN: synthesize images of any size, train on your own photos."""


@cli.command()
@click.option("--preset", default="tiny", show_default=True, help="preset name (tiny, paper-101, paper-389) or YAML file")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the random weights")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="model file to write (.safetensors)")
def init(preset: str, seed: int, out: str):
    """Write a model of a preset with randomly initialised weights."""
    from .api import init_model

    model = init_model(preset, seed)
    path = model.save(out)
    n = sum(p.numel() for p in model.generator.parameters())
    click.echo(f"wrote {path} ({model.config.name}, {n:,} generator parameters)")


@cli.command()
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="model file or training run directory (default: the bundled model)")
@click.option("--seed", default=0, show_default=True, type=int, help="image seed")
@click.option("--width", default=None, type=int, help="[default: 2048, or the --latents image's]")
@click.option("--height", default=None, type=int, help="[default: 256, or the --latents image's]")
@click.option("--x", "x", default=None, type=int, help="left pixel (default: centred on 0)")
@click.option("--y", "y", default=None, type=int, help="top pixel (default: centred on the horizon)")
@click.option("--latents", "latents_path", default=None, type=click.Path(dir_okay=False),
              help="latents file of `invert`: its zg, W+, zl and noise override the canvas of SEED")
@click.option("--runtime", default="torch", show_default=True, type=click.Choice(["torch", "onnx"]),
              help="onnx: render through onnxruntime alone from an `export` folder given as --model (no torch)")
@scene_options
@click.option("--out", required=True, type=click.Path(),
              help=".png, .jpg, .tif, .npy (raw float32) or .zarr (an OME-Zarr pyramid)")
@click.option("--resume", is_flag=True,
              help="continue the render of --out that was killed part-way (.npy, .zarr): only the missing tiles")
@render_options()
@click.pass_context
def generate(ctx, model_path, seed, width, height, x, y, latents_path, runtime, out, resume, nproc, **kw):
    """Synthesize the region (x, y, width, height) of image SEED to a file.

    Memory stays bounded whatever the size: .tif, .npy and .zarr hold one tile, .png one short
    row of tiles, .jpg the whole image (refused above 64 megapixels). Outputs whose uncompressed
    size exceeds the free disk space are refused up front (--force for .png/.tif/.zarr). Under
    torchrun (`torchrun --nproc_per_node N -m infinitygan generate ...`) the ranks share the tiles
    of any canvas (seed, scene or latents) and rank 0 writes the same bytes as one process; a
    .zarr (OME-Zarr, with zoom-out levels) is written by every rank, each its own chunks. A
    render to .npy or .zarr killed part-way continues with the same command and --resume.
    """
    if runtime == "onnx":
        if resume:
            raise UserError("--runtime onnx renders in one go (no --resume)")
        return _generate_onnx(model_path, seed, width, height, x, y, latents_path, out, nproc, kw)
    from .api import load_model
    from .parallel.launch import relaunch
    from .render import Job, RenderOptions, SeedSource, run
    from .scene.cli import NAMES as SCENE_NAMES
    from .scene.cli import scene_from_options

    options, quiet = options_from(kw)
    options = RenderOptions.of(options, resume=resume or None)
    for name, v in (("--width", width), ("--height", height)):
        if v is not None and v <= 0:
            raise UserError(f"{name} must be positive, got {v}")
    scene = scene_from_options(ctx, seed, **{k: kw.pop(k) for k in SCENE_NAMES})
    if latents_path is not None:
        if scene is not None:
            raise UserError("--latents cannot be combined with scene options (--style, --resample, --cyclic, "
                            "--fusion-kernel, --scene)")
        from .inversion.outpaint import latents_job

        relaunch(ctx, nproc)
        return run(lambda: latents_job(model_path, seed, width, height, x, y, latents_path), out, options, quiet)
    if scene is not None:
        from .scene.api import SceneSource, scene_region

        def build() -> Job:
            model = load_model(model_path if model_path is not None else scene.model)
            return Job(model, SceneSource(scene), scene_region(model, scene, width, height, x, y))
    else:
        def build() -> Job:
            model = load_model(model_path)
            return Job(model, SeedSource(seed), model.region(2048 if width is None else width,
                                                             256 if height is None else height, x, y))
    relaunch(ctx, nproc)  # --nproc N: this command line in N ranks (after every check: errors are said once)
    run(build, out, options, quiet)


def _generate_onnx(model_path, seed, width, height, x, y, latents_path, out, nproc, kw) -> None:
    """``generate --runtime onnx``: an export folder through onnxruntime, with the same checked
    RenderOptions as the engine (what it cannot honour is refused); imports no torch."""
    from .scene.cli import NAMES as SCENE_NAMES

    if model_path is None:
        raise UserError("--runtime onnx renders an export folder: pass it as --model (see `infinitygan export`)")
    used = [n for n in SCENE_NAMES if kw.get(n) not in (None, (), False)]
    if latents_path is not None or used:
        raise UserError("--runtime onnx renders plain seeds (no --latents or scene options yet)")
    options, quiet = options_from(kw)
    for name, v in (("--width", width), ("--height", height)):
        if v is not None and v <= 0:
            raise UserError(f"{name} must be positive, got {v}")
    if nproc not in (None, 1):
        raise UserError("--runtime onnx runs in one process (no --nproc)")
    from .export.runtime import generate_onnx

    generate_onnx(model_path, seed, 2048 if width is None else width, 256 if height is None else height, x, y,
                  out, options, quiet)


def _register_optional():
    """Subcommands that live in other modules (model info, presets, the authors' checkpoints,
    training, data, metrics, inversion, video, the tile server)."""
    import importlib

    from . import info, presets
    from .bench import cli as bench_cli
    from .official import cli as official_cli

    for module in (info, bench_cli, official_cli, presets):
        module.register(cli)
    for name in ("data.cli", "training.cli", "metrics.cli", "inversion.cli", "video.cli", "serve.cli", "export.cli",
                 "campaign.cli"):
        try:
            mod = importlib.import_module(f".{name}", __package__)
        except ImportError as e:
            # a missing optional dependency hides the room's commands; a broken import of our own
            # (a renamed module or function) must not hide them silently
            if e.name is None or e.name.split(".")[0] == __package__:
                raise
            continue
        mod.register(cli)


_register_optional()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one line each, no source location."""
    click.echo(f"infinitygan: warning: {message}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every temporary file is removed on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated


def _rank0() -> bool:
    """Under a launcher only rank 0 reports interrupts (the others stop silently)."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    shown, warnings.showwarning = warnings.showwarning, _show_warning
    previous = None
    status = 143
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)  # training installs its own while it runs
    try:
        status = _main(argv)
    finally:
        warnings.showwarning = shown
        if previous is not None:
            try:
                signal.signal(signal.SIGTERM, previous)
            except Terminated:  # a launcher's SIGTERM while the command was already ending
                signal.signal(signal.SIGTERM, previous)
                status = status or 143
    return status


def _main(argv: list[str] | None) -> int:
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        # the command line travels with the dispatch (``--nproc`` runs it again: parallel.launch.relaunch)
        status = cli.main(args=args, prog_name="infinitygan", standalone_mode=False, obj={"argv": args})
    except UserError as e:
        click.echo(f"infinitygan: error: {e}", err=True)
        return 2
    except LostPeer as e:  # every surviving rank says it: the group is gone, nobody reports for it
        click.echo(f"infinitygan: error: {e}", err=True)
        return 1
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, Terminated):  # click turns KeyboardInterrupt into Abort
            if _rank0():
                click.echo("infinitygan: terminated", err=True)
            return 143
        if _rank0():
            click.echo("infinitygan: aborted", err=True)
        return 130
    except Terminated:
        if _rank0():
            click.echo("infinitygan: terminated", err=True)
        return 143
    except click.ClickException as e:
        click.echo(f"infinitygan: error: {e.format_message()}", err=True)
        return 2
    except OSError as e:
        name = f": {_public_name(e.filename)}" if e.filename else ""
        click.echo(f"infinitygan: error: {e.strerror or e}{name}", err=True)
        return 2
    except KeyboardInterrupt:
        if _rank0():
            click.echo("infinitygan: interrupted", err=True)
        return 130
    return status if isinstance(status, int) else 0  # ctx.exit(code) inside a command


def _public_name(filename) -> str:
    """The name a user gave for an output, not its hidden temporary file (.NAME.xxxxxxxx.part)."""
    import re
    from pathlib import Path

    p = Path(str(filename))
    m = re.fullmatch(r"\.(.+)\.[^.]+\.part", p.name)
    return str(p.with_name(m.group(1))) if m else str(p)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
