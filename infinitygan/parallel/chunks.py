"""A render that every rank writes: ``--out NAME.zarr`` in one process or a torchrun group.

    torchrun --nproc_per_node N -m infinitygan generate ... --out big.zarr     # CLI
    render_to_zarr(synth, path, canvas, plan, options, key)                   # every rank

Unlike ``parallel.tiles`` (one file, rank 0 its only writer, every tile sent to it), each rank
writes the chunks of the tiles it renders straight into the store (``io.zarr_store``: one chunk
per tile, zoom-out levels built from quarters as the tiles beneath them finish): no pixel passes
through rank 0, and memory per rank is a tile and a chunk whatever the image's size. The work is
the same as one process's: rank 0's plan, unit of work g rendered by rank g mod world with the
computation one process does for it, so the store holds the bytes of a one-process render.

Steps, every rank: rank 0 creates the store in ``.NAME.zarr.partial`` (or, with ``resume``, finds
the partial store of the same render: ``render.resume.render_key``) and lists the units already
written; every rank checks that it sees the store (a shared file system across machines:
``env.check_shared_folder``); each renders its units not yet written; then, level by level and
after a barrier, each builds the level chunks it owns that were still missing (``ZarrPyramid.sweep``);
rank 0 marks the store complete and renames it to NAME.zarr (replacing an older store there). A
rank that fails is named by rank 0 in one line once every rank has finished its units; the
partial store keeps everything written, so ``--resume`` continues from there.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..errors import UserError
from ..io.resumable import partial_path
from ..io.zarr_store import ZarrPyramid, replace_store
from . import env
from .tiles import agreed_plan, owner


def _context(device: torch.device) -> env.DistContext:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return env.DistContext(dist.get_rank(), dist.get_world_size(), 0, device, False)
    return env.DistContext(0, 1, 0, device, False)


def _gather_failure(ctx: env.DistContext, error: str | None) -> None:
    """Every rank's failure (None: fine) of the step just done; rank 0 raises the first in one
    line naming the rank, the others exit with status 1 (after a collective: no rank hangs)."""
    bad = [(r, e) for r, e in enumerate(env.all_gather_objects(ctx, error)) if e]
    if not bad:
        return
    r, e = bad[0]
    if ctx.is_main:
        raise UserError(e if not ctx.distributed else f"rank {r} failed: {e}")
    raise SystemExit(1)


def _failure(e: Exception) -> str:
    return str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"


def render_to_zarr(synth, path: str | Path, canvas, plan, options, key: str, styles=None, post=None) -> dict:
    """Render ``plan`` of ``canvas`` into the OME-Zarr store ``path`` with every rank of the
    default process group (or in this process alone); call it on every rank. ``options``: the
    ``RenderOptions`` (``resume``: continue a partial store of the same render, ``key``; a
    progress bar on rank 0). ``styles`` / ``post``: as in ``parallel.tiles``.

    Returns {"rank", "world", "units", "tiles", "skipped"}: what this rank rendered, and the
    units found already written.
    """
    ctx = _context(torch.device("cpu"))  # gloo: the collectives here are small objects
    path = Path(path)
    partial = partial_path(path)
    if ctx.distributed:
        plan = agreed_plan(plan)
    tiles = plan.tiles
    store = ZarrPyramid(partial, tiles.region.height, tiles.region.width, tiles.tile_height, tiles.tile_width)

    error, done = None, None
    if ctx.is_main:
        try:
            if getattr(options, "resume", False) and partial.is_dir() and store.key() is not None:
                if store.key() != key:
                    raise UserError(f"cannot resume {path}: its interrupted render is of another image (model, canvas, "
                                    "region, tile grid, dtype or device differ); drop --resume to start afresh")
            else:
                if partial.exists():
                    shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
                store.create(key, path.stem)
            done = [g for g, unit in enumerate(plan.unit_tiles()) if all(store.tile_done(t.i, t.j) for t in unit)]
        except UserError as e:
            error = str(e)
        except OSError as e:
            error = f"cannot write {path}: {e.strerror or e}"
    env.check_setup(ctx, error)
    env.check_shared_folder(ctx, partial, "the output folder")
    done = set(env.all_gather_objects(ctx, done)[0])

    rank, world = ctx.rank, ctx.world_size
    result = {"rank": rank, "world": world, "units": 0, "tiles": 0, "skipped": len(done)}
    todo = [g for g in range(sum(1 for _ in plan.units())) if g not in done and owner(g, world) == rank]
    bar = None
    if options.progress and ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="unit", desc=f"synthesis ({world} ranks)" if world > 1 else "synthesis",
                   leave=False)
    error = None
    try:
        wanted = set(todo)
        pieces = synth.tiles(canvas, plan, styles=styles, select=wanted.__contains__)
        if post is not None:
            pieces = post(pieces)
        unit_of = {}
        for g, unit in enumerate(plan.unit_tiles()):
            if g in wanted:
                unit_of.update({(t.i, t.j): (g, len(unit)) for t in unit})
        left: dict[int, int] = {}
        for t, px in pieces:
            store.write_tile(t.i, t.j, px)
            result["tiles"] += 1
            g, n = unit_of[(t.i, t.j)]
            left[g] = left.get(g, n) - 1
            if left[g] == 0:
                result["units"] += 1
                if bar is not None:
                    bar.update(1)
    except (UserError, RuntimeError, OSError, ValueError) as e:
        if not ctx.distributed:
            raise
        error = _failure(e)
    finally:
        if bar is not None:
            bar.close()
    _gather_failure(ctx, error)

    for k in range(1, store.top + 1):  # the level chunks whose quarters met on no single rank
        error = None
        try:
            store.sweep(k, mine=lambda index: owner(index, world) == rank)
        except (UserError, RuntimeError, OSError, ValueError) as e:
            if not ctx.distributed:
                raise
            error = _failure(e)
        _gather_failure(ctx, error)
    if ctx.is_main:
        store.mark_complete()
        replace_store(partial, path)
    env.barrier(ctx)
    return result
