"""The writer of every file-writing render: one process, or the ranks of a torchrun group.

    render_to_file(model, path, source, region, options)   # Python API, either mode
    render_array(model, source, region, options)            # Python API, this process: float32 (H, W, 3)
    run(build, out, options)                                # a command: set-up, errors, messages

One plan, many runners: the synthesizer's planner makes the plan of the region for the file
(``Planner.file_plan``: tile, batch, GS chunks, short rows for PNG) from the options, and this
process (``write_region``) or the ranks of a torchrun group (``parallel.tiles``, rank 0's plan)
run it.

Everything refusable is refused before synthesis, once: the options on construction
(``RenderOptions``), the output (path, JPEG limit, free disk space) here, the source and the
region by the command's ``build``. Under torchrun every rank builds the same job; a set-up
error on any rank stops all of them before any work, reported once by rank 0.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np

from ..errors import UserError
from ..io.images import check_output, check_output_path, write_tiles
from ..io.resumable import RESUMABLE, check_resumable
from ..latents import Canvas
from ..planning import RenderPlan
from ..synthesis import Synthesizer
from ..tiling import Region
from .options import RenderOptions
from .resume import render_key, write_npy_resumable
from .sources import CanvasSource, PostProcess


def require_tileable(model, what: str) -> None:
    """UserError unless ``model`` can be rendered tile by tile (the zero-padded StyleGAN2+NCI
    baseline cannot: its pixels depend on the window asked for, so tiles, frames or map tiles
    would disagree with a one-shot render)."""
    if model.generator.geometry.padded:
        raise UserError(f"{what} needs a padding-free generator: {model.config.name!r} is zero-padded, so its pixels "
                        "depend on the region asked for (render it in one shot with `generate`)")


def write_region(synth: Synthesizer, path: Path, canvas: Canvas, plan: RenderPlan, options: RenderOptions,
                 styles=None, post: PostProcess | None = None) -> Path:
    """Stream the plan's region of a canvas to an (already checked) image file in this process,
    through the engine's tiles (atomic: a temporary file renamed at the end). With a plan of
    ``Planner.file_plan`` memory is bounded by a tile or a short row of PNG, never the image."""
    region = plan.region
    tiles = synth.tiles(canvas, plan, options.progress, styles)
    if post is not None:
        tiles = post(tiles)
    pieces = ((t.y0 - region.y, t.x0 - region.x, px) for t, px in tiles)
    return write_tiles(path, region.width, region.height, plan.tiles.tile_height, plan.tiles.tile_width, pieces,
                       options.force)


def render_array(model, source: CanvasSource, region: Region, options: RenderOptions | None = None) -> np.ndarray:
    """``region`` of ``source`` rendered with ``model`` in this process: float32 (height, width, 3),
    the source's per-tile step (``post``) applied. Memory: the whole array."""
    options = options or RenderOptions()
    synth = options.synthesizer(model)
    plan = synth.planner.plan(region, options.tile, options.batch)
    tiles = synth.tiles(source.canvas(synth), plan, options.progress, source.styles())
    post = source.post(region)
    if post is not None:
        tiles = post(tiles)
    out = np.empty((region.height, region.width, 3), np.float32)
    for t, px in tiles:
        out[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] = px
    return out


def _group_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def render_to_file(model, path: str | Path, source: CanvasSource, region: Region,
                   options: RenderOptions | None = None) -> Path:
    """Render ``region`` of ``source`` with ``model`` to ``path`` (.png, .jpg, .tif, .npy, .zarr).

    In a process group of several ranks (torch.distributed initialised, e.g. under torchrun),
    call it on every rank: the ranks share the work (rank 0's plan) and rank 0 writes the file;
    a .zarr is written by every rank, each its own tiles' chunks. .npy and .zarr renders can be
    resumed (``options.resume``) after a kill.
    """
    options = options or RenderOptions()
    if options.resume:
        check_resumable(path)
    path = check_output(path, region.width, region.height, options.force)
    synth = options.synthesizer(model)
    plan = synth.planner.file_plan(region, path, options.tile, options.batch)
    _render(synth, path, source, plan, options, _group_size())
    return path


def _render(synth: Synthesizer, path: Path, source: CanvasSource, plan: RenderPlan, options: RenderOptions,
            world: int, canvas: Canvas | None = None) -> None:
    """The runner for the output: .zarr every rank writes; .npy through its partial file (it
    resumes); the other formats streamed by this process or, in a group, by rank 0."""
    canvas = source.canvas(synth) if canvas is None else canvas
    styles, post = source.styles(), source.post(plan.region)
    ext = path.suffix.lower()
    key = render_key(synth.generator, source, plan, synth.dtype, synth.device) if ext in RESUMABLE else None
    if ext == ".zarr":
        from ..parallel.chunks import render_to_zarr

        render_to_zarr(synth, path, canvas, plan, options, key, styles=styles, post=post)
    elif world == 1 and ext == ".npy":
        write_npy_resumable(synth, path, canvas, plan, options, key, styles, post)
    elif world == 1:
        write_region(synth, path, canvas, plan, options, styles, post)
    else:
        from ..parallel.tiles import render_to_file_distributed

        render_to_file_distributed(synth, path, canvas, plan, options, styles=styles, post=post, key=key)


@dataclass
class Job:
    """What a command renders: the model, the canvas source, the region, and the words after
    the size in its "wrote" line (e.g. "at x=0, y=-64")."""

    model: object
    source: CanvasSource
    region: Region
    note: str = ""


def run(build: Callable[[], Job], out: str | Path, options: RenderOptions, quiet: bool = False) -> Path:
    """A file-writing command: ``build()`` (load the model, the source, the region; UserError for
    bad input) then render to ``out`` and say "wrote OUT (WxH...)" on stderr unless ``quiet``.

    Under torchrun (WORLD_SIZE > 1) every rank builds the job and renders its share; rank 0
    writes the file and the one line; every set-up error is gathered first and reported once.
    """
    from ..parallel import env

    check_output_path(out)  # the cheap checks before loading anything
    if options.resume:
        check_resumable(out)
    if not env.launched():
        job = build()
        path = render_to_file(job.model, out, job.source, job.region, options)
        _say(path, job, 1, quiet)
        return path
    return _run_distributed(build, out, options, quiet)


def _say(path, job: Job, world: int, quiet: bool) -> None:
    if quiet:
        return
    extra = [job.note] if job.note else []
    if world > 1:
        extra.append(f"{world} ranks")
    r = job.region
    click.echo(f"wrote {path} ({r.width}x{r.height}{'; ' + '; '.join(extra) if extra else ''})", err=True)


def _run_distributed(build, out, options: RenderOptions, quiet: bool) -> Path:
    import torch

    from ..parallel import env

    error = None
    try:
        device = env.local_device(options.torch_device)  # cuda:LOCAL_RANK on CUDA machines
    except UserError as e:
        device, error = torch.device("cpu"), str(e)
    ctx = env.setup(device, backend="gloo")  # gloo: the tiles travel through host memory
    try:
        job = synth = path = plan = canvas = None
        if error is None:
            try:
                job = build()
                r = job.region
                path = check_output(out, r.width, r.height, options.force) if ctx.is_main else Path(out)
                synth = options.synthesizer(job.model, ctx.device)
                plan = synth.planner.file_plan(r, path, options.tile, options.batch)  # (rank 0's is everyone's)
                canvas = job.source.canvas(synth)
            except UserError as e:
                error = str(e)
        env.check_setup(ctx, error)
        try:
            _render(synth, path, job.source, plan, options, ctx.world_size, canvas)
        except Exception as e:
            if env.is_lost_peer(e):  # a rank killed outright: every survivor says so in one line
                raise env.lost_peer(ctx, e) from None
            if not ctx.is_main:
                sys.exit(1)  # the failure went to rank 0, which reports it in one line
            raise
        if ctx.is_main:
            _say(path, job, ctx.world_size, quiet)
        return path
    finally:
        env.teardown(ctx)
