"""The ``infinitygan`` command line (also ``python -m infinitygan``).

Bad input is reported as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import json
import sys
import warnings

import click

from .errors import UserError


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
@click.option("--tile", default=None, type=int, help="tile size in pixels (rounded to the model's lattice)")
@click.option("--batch", default=None, type=int, help="tiles per forward pass")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, mps or auto")
@click.option("--dtype", default="float32", show_default=True, help="float32, bfloat16 or float16")
@click.option("--latents", "latents_path", default=None, type=click.Path(dir_okay=False),
              help="latents file of `invert`: its zg, W+, zl and noise override the canvas of SEED")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help=".png, .jpg, .tif or .npy (raw float32)")
@click.option("--max-memory", default=None, type=float,
              help="working-memory budget in MB that picks the default tile (default: 256 on CPU, 1/4 of the GPU)")
@click.option("--force", is_flag=True, help="write even if the uncompressed output exceeds the free disk space")
@click.option("--quiet", is_flag=True, help="no progress bar")
def generate(model_path, seed, width, height, x, y, tile, batch, device, dtype, latents_path, out, max_memory, force,
             quiet):
    """Synthesize the region (x, y, width, height) of image SEED to a file.

    Memory stays bounded whatever the size: .tif and .npy hold one tile, .png one short row of
    tiles, .jpg the whole image (refused above 64 megapixels). Outputs whose uncompressed size
    exceeds the free disk space are refused up front (--force for .png/.tif).
    """
    from . import distributed
    from .api import load_model, resolve_device, resolve_dtype
    from .io.images import check_output
    from .tiling import Region

    if latents_path is not None:
        from .inversion.cli import generate_latents

        return generate_latents(model_path, seed, width, height, x, y, tile, batch, device, dtype,
                                latents_path, out, quiet)
    width, height = 2048 if width is None else width, 256 if height is None else height
    if distributed.launched():  # under torchrun: the tiles shared among the ranks
        return distributed.generate_distributed(model_path, seed, width, height, x, y, tile, batch, device, dtype,
                                                out, force, max_memory, quiet)
    if width <= 0 or height <= 0:
        raise UserError(f"--width and --height must be positive, got {width}x{height}")
    if tile is not None and tile <= 0:
        raise UserError(f"--tile must be positive, got {tile}")
    if batch is not None and batch <= 0:
        raise UserError(f"--batch must be positive, got {batch}")
    if max_memory is not None and not max_memory > 0:
        raise UserError(f"--max-memory must be positive, got {max_memory}")
    Region(0 if x is None else x, 0 if y is None else y, width, height)  # sizes and positions in range
    check_output(out, width, height, force)
    resolve_dtype(dtype)
    resolve_device(device)
    model = load_model(model_path)
    path = model.generate_to_file(out, seed, width, height, x, y, tile, batch, device, dtype,
                                  progress=not quiet, force=force, max_memory_mb=max_memory)
    if not quiet:
        click.echo(f"wrote {path} ({width}x{height})", err=True)


@cli.command()
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file (default: bundled)")
@click.option("--width", default=2048, show_default=True, type=int)
@click.option("--height", default=2048, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--repeats", default=3, show_default=True, type=int, help="timed runs per scheme (median)")
@click.option("--tile", default=None, type=int, help="tile of the default scheme")
@click.option("--batch", default=None, type=int, help="batch of the default scheme")
@click.option("--modes", default="default,paper_patches,one_shot", show_default=True)
def bench(model_path, width, height, device, dtype, repeats, tile, batch, modes):
    """Print FLOPs/pixel, seconds and peak memory of the default tiling, the authors' 101-pixel
    patches and one-shot synthesis, as one JSON object."""
    from .api import load_model, resolve_device, resolve_dtype
    from .bench import MODES, run_bench

    if width <= 0 or height <= 0:
        raise UserError(f"--width and --height must be positive, got {width}x{height}")
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in MODES]
    if bad:
        raise UserError(f"unknown bench mode(s) {', '.join(bad)} (choose from {', '.join(MODES)})")
    resolve_dtype(dtype)
    dev = resolve_device(device)
    load_model(model_path)  # validate before spawning workers
    res = run_bench(model_path, width, height, str(dev), dtype, repeats, mode_list, tile, batch,
                    isolate=dev.type == "cpu")
    click.echo(json.dumps(res))


def _register_optional():
    """Subcommands that live in other modules (model info, presets, the authors' checkpoints,
    scene options of generate, training, data, metrics, inversion, video, the tile server)."""
    import importlib

    from . import info, official, presets
    from .scene import cli as scene_cli

    for module in (info, official, presets, scene_cli):
        module.register(cli)
    for name in ("training.cli", "metrics.cli", "inversion.cli", "video", "serve.cli"):
        try:
            mod = importlib.import_module(f".{name}", __package__)
        except ImportError:
            continue
        mod.register(cli)


_register_optional()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one line each, no source location."""
    click.echo(f"infinitygan: warning: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown


def _main(argv: list[str] | None) -> int:
    try:
        status = cli.main(args=argv, prog_name="infinitygan", standalone_mode=False)
    except UserError as e:
        click.echo(f"infinitygan: error: {e}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("infinitygan: aborted", err=True)
        return 130
    except click.ClickException as e:
        click.echo(f"infinitygan: error: {e.format_message()}", err=True)
        return 2
    except OSError as e:
        click.echo(f"infinitygan: error: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("infinitygan: interrupted", err=True)
        return 130
    return status if isinstance(status, int) else 0  # ctx.exit(code) inside a command


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
