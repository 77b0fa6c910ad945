"""The ``bench`` subcommand: FLOPs per pixel, seconds and peak memory of the tiling schemes."""
from __future__ import annotations

import json

import click

from ..errors import UserError


@click.command("bench")
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
    from ..api import load_model, resolve_device, resolve_dtype
    from .schemes import MODES, run_bench

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


def register(cli: click.Group) -> None:
    cli.add_command(bench)
