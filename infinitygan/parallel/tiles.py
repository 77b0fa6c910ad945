"""Distributed synthesis: the tiles of one region shared among the processes of a
torch.distributed group, one output file written by rank 0, streamed.

    torchrun --nproc_per_node N -m infinitygan generate ... --out big.tif      # CLI
    render_to_file_distributed(synth, path, canvas, plan, options)            # Python API

Plan. Every rank plans the region (``planning.Planner``: tile height and width, batch, tiles per
unit of work) from its own memory budget; rank 0's plan is sent to every rank and is the one run,
so ranks on different devices or with different budgets still agree on the units (a rank running
its own would cut the region differently and the group would hang).

Work. The engine renders a plan in units of work (``RenderPlan.units``: neighbouring tiles of a
row of tiles sharing one GS pass, GT in batches). Unit g is rendered by rank
g mod world, with exactly the computation one process would do for it, so the output of N
ranks is byte-identical to the output of one process, on any device. Any canvas renders so
(plain seeds, scenes with style fusion, inverted latents with their W+ ``styles``); ``post``,
a per-tile step such as pasting known pixels back, runs on the rank that rendered the tile.

Data. Rank 0 writes the file through the ordinary streaming writers, unit after unit in
row-major order: its own units come straight from its engine, another rank's unit arrives over
torch.distributed (gloo, CPU tensors: the writer needs the pixels in host memory anyway) as a
one-element status header followed by the unit's tiles (float32, shapes known from the plan on
both sides). A rank renders its whole unit before sending it, so it can start its next unit
while rank 0 writes; memory per rank is bounded by one unit (rank 0: its own tile + one
received tile + the writer's buffer), never by the image.

Failures. A rank whose rendering raises sends a failure header carrying the message to rank 0,
which stops with one line (``rank R failed: ...``); the writer's temporary file is removed, so
nothing that looks complete is left. Set-up errors (model, device, output) are gathered from
every rank before any work and reported once by rank 0. A rank that dies without a word (killed)
is detected by torchrun, which ends the others.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..io.images import write_tiles
from ..latents import Canvas
from ..planning import RenderPlan
from ..synthesis import Synthesizer

_OK = 0
_MAX_MESSAGE = 2000


def _dist():
    import torch.distributed as dist

    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed")
    return dist


class RankFailed(UserError):
    """Another rank of the group failed."""


def _send_status(dist, group, code: int, message: str = "") -> None:
    data = message.encode()[:_MAX_MESSAGE]
    dist.send(torch.tensor([code, len(data)], dtype=torch.int64), dst=_global(dist, group, 0), group=group)
    if data:
        dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8), dst=_global(dist, group, 0), group=group)


def _recv_status(dist, group, src: int) -> None:
    head = torch.empty(2, dtype=torch.int64)
    dist.recv(head, src=_global(dist, group, src), group=group)
    code, n = int(head[0]), int(head[1])
    if code != _OK:
        msg = torch.empty(n, dtype=torch.uint8)
        if n:
            dist.recv(msg, src=_global(dist, group, src), group=group)
        raise RankFailed(f"rank {src} failed: {bytes(msg.tolist()).decode(errors='replace')}")


def _global(dist, group, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


def owner(unit: int, world: int) -> int:
    """The rank that renders unit of work ``unit`` (round robin: balanced to one unit)."""
    return unit % world


def agreed_plan(plan: RenderPlan, group=None) -> RenderPlan:
    """Rank 0's ``plan``, the same on every rank of ``group``."""
    dist = _dist()
    choice = [plan if dist.get_rank(group) == 0 else None]
    dist.broadcast_object_list(choice, src=_global(dist, group, 0), group=group)
    return choice[0]


def render_to_file_distributed(synth: Synthesizer, path: str | Path, canvas: Canvas, plan: RenderPlan, options,
                               group=None, styles: torch.Tensor | None = None, post: Callable | None = None,
                               key: str | None = None) -> dict:
    """Render ``plan`` (rank 0's: see ``agreed_plan``) of ``canvas`` to ``path`` with every rank of
    ``group`` (default: the default process group, already initialised by the caller); call it on
    every rank. ``options``: the ``RenderOptions`` (its progress bar shows on rank 0; ``force``).
    Rank 0 writes the file (.tif, .png, .npy, .jpg); the others only render. ``styles``: a W+
    override (1, n_styles, style_dim); ``post``: a function over an iterator of (tile, pixels),
    applied to each rank's own tiles. A plan for a file comes from
    ``synth.planner.file_plan(region, path, options.tile, options.batch)``. ``key``
    (``render.resume.render_key``, .npy only): rank 0 writes through the partial file of the
    render (``io.resumable.PartialNpy``), so a killed render resumes; with ``options.resume`` the
    units it already holds are skipped by every rank.

    Returns {"rank", "world", "units", "tiles"}: what this rank rendered.
    """
    dist = _dist()
    if not dist.is_initialized():
        raise UserError("torch.distributed is not initialised (init_process_group first, or use torchrun)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    path = Path(path)
    plan = agreed_plan(plan, group)
    region = plan.region
    part, skip = None, frozenset()
    if key is not None and path.suffix.lower() == ".npy":  # the partial file: rank 0's, its written units everyone's
        from ..io.resumable import PartialNpy

        found: list = [None, None]
        if rank == 0:
            try:
                part = PartialNpy(path, region.width, region.height, key, sum(1 for _ in plan.units()),
                                  resume=getattr(options, "resume", False))
                found[0] = sorted(part.done)
            except UserError as e:
                found[1] = str(e)
        dist.broadcast_object_list(found, src=_global(dist, group, 0), group=group)
        if found[1] is not None:
            if rank == 0:
                raise UserError(found[1])
            raise RankFailed("rank 0 failed")  # rank 0 says why
        skip = frozenset(found[0])
    mine = synth.tiles(canvas, plan, styles=styles, select=lambda g: owner(g, world) == rank and g not in skip)
    if post is not None:
        mine = post(mine)
    done = {"rank": rank, "world": world, "units": 0, "tiles": 0}

    if rank != 0:
        try:
            for g, tiles in enumerate(plan.unit_tiles()):
                if owner(g, world) != rank or g in skip:
                    continue
                pieces = [np.ascontiguousarray(next(mine)[1], dtype=np.float32) for _ in tiles]
                done["units"] += 1
                done["tiles"] += len(pieces)
                _send_status(dist, group, _OK)
                for px in pieces:
                    dist.send(torch.from_numpy(px), dst=_global(dist, group, 0), group=group)
        except Exception as e:  # tell the writer, which stops the run with this line
            _send_status(dist, group, 1, str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}")
            raise
        return done

    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=sum(len(u) for g, u in enumerate(plan.unit_tiles()) if g in skip),
                   unit="tile", desc=f"synthesis ({world} ranks)", leave=False)

    def items():
        """(unit, tile, pixels) in the file's order, and (unit, None, None) after each unit."""
        for g, tiles in enumerate(plan.unit_tiles()):
            if g in skip:
                continue
            src = owner(g, world)
            if src == 0:
                done["units"] += 1
            else:
                _recv_status(dist, group, src)
            for t in tiles:
                if src == 0:
                    px = next(mine)[1]
                    done["tiles"] += 1
                else:
                    buf = torch.empty((t.y1 - t.y0, t.x1 - t.x0, 3), dtype=torch.float32)
                    dist.recv(buf, src=_global(dist, group, src), group=group)
                    px = buf.numpy()
                yield g, t, px
                if bar is not None:
                    bar.update(1)
            yield g, None, None

    try:
        if part is not None:
            try:
                for g, t, px in items():
                    if t is None:
                        part.unit_done(g)
                    else:
                        part.write(t.y0 - region.y, t.x0 - region.x, px)
            except BaseException:
                part.close()
                raise
            part.commit()
        else:
            pieces = ((t.y0 - region.y, t.x0 - region.x, px) for _, t, px in items() if t is not None)
            write_tiles(path, region.width, region.height, plan.tiles.tile_height, plan.tiles.tile_width, pieces,
                        options.force)
    finally:
        if bar is not None:
            bar.close()
    return done
