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
    from ..render.options import RenderOptions
    from .schemes import MODES, run_bench

    if not (0 < width <= MAX_BENCH_SIDE and 0 < height <= MAX_BENCH_SIDE):
        raise UserError(f"--width and --height must be in 1..{MAX_BENCH_SIDE}, got {width}x{height}")
    if not 1 <= repeats <= 100:
        raise UserError(f"--repeats must be in 1..100, got {repeats}")
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in MODES]
    if bad or not mode_list:
        raise UserError(f"unknown bench mode(s) {', '.join(bad) or '(none)'} (choose from {', '.join(MODES)})")
    options = RenderOptions(tile=tile, batch=batch, device=device, dtype=dtype)  # checked once, here
    resolve_dtype(dtype)
    dev = resolve_device(device)
    model = load_model(model_path)  # validate before spawning workers
    if "one_shot" in mode_list:
        synth = options.synthesizer(model)
        plan = synth.planner.one_shot_plan(model.region(width, height))
        need = synth.planner.working_bytes(*plan.window)
        have = _memory_bytes()
        if have and need > have // 2:
            raise UserError(f"one-shot synthesis of {width}x{height} needs about {need / 2**30:.1f} GiB of working "
                            f"memory, more than half of this machine's {have / 2**30:.1f} GiB: use smaller sizes "
                            "or --modes default,paper_patches")
    res = run_bench(model_path, width, height, str(dev), dtype, repeats, mode_list, tile, batch,
                    isolate=dev.type == "cpu")
    click.echo(json.dumps(res))


def register(cli: click.Group) -> None:
    cli.add_command(bench)


#: largest side of a benchmark region (pixels); large images are `generate`'s job
MAX_BENCH_SIDE = 16384


def _memory_bytes() -> int:
    """Physical memory of the machine (0 when unknown)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
