"""What identifies a render, for ``generate ... --resume`` (see ``io.resumable`` for which formats
resume and why the others cannot).

A partial output may only be continued by the render that started it, or the file would mix two
images: ``render_key`` hashes everything its pixels depend on (the generator's config and
weights, the canvas source with every value it holds, the plan: region, tile grid, batch and
structure chunks, the compute dtype and the device kind) and the partial output keeps it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers

import numpy as np
import torch

from ..errors import UserError

#: how deep ``_feed`` follows nested objects of a canvas source
_MAX_DEPTH = 12


def _feed(h, obj, depth: int = 0) -> None:
    """Hash ``obj`` by value: tensors and arrays by dtype, shape and bytes; dataclasses, plain
    objects, dicts and sequences by their items; numbers, strings and None by repr."""
    if depth > _MAX_DEPTH:
        raise UserError("--resume: the canvas source nests too deep to identify its render")
    if obj is None or isinstance(obj, (bool, str, bytes, numbers.Number)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"array:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            h.update(f"{f.name}=".encode())
            _feed(h, getattr(obj, f.name), depth + 1)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, obj[k], depth + 1)
        h.update(b"}")
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        h.update(f"{type(obj).__name__}[".encode())
        for v in items:
            _feed(h, v, depth + 1)
        h.update(b"]")
    elif callable(obj) and not hasattr(obj, "__dict__"):
        h.update(f"callable:{getattr(obj, '__qualname__', type(obj).__qualname__)};".encode())
    elif hasattr(obj, "__dict__"):
        h.update(f"{type(obj).__qualname__}(".encode())
        _feed(h, {k: v for k, v in vars(obj).items() if not k.startswith("_")}, depth + 1)
        h.update(b")")
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r};".encode())


def render_key(generator, source, plan, dtype, device: torch.device) -> str:
    """The hex sha256 of a render: ``generator`` (its config and every weight), the canvas
    ``source`` (its values), the ``plan`` (region, tile grid, batch, structure chunks), the
    compute ``dtype`` and the kind of ``device`` (CPU and GPU round differently)."""
    h = hashlib.sha256()
    cfg = getattr(generator, "cfg", None) or getattr(generator, "config", None)
    h.update(json.dumps(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg),
                        sort_keys=True, default=repr).encode())
    for name, t in sorted(generator.state_dict().items()):
        h.update(name.encode())
        _feed(h, t)
    _feed(h, source)
    tiles = plan.tiles
    region = tiles.region
    _feed(h, (region.x, region.y, region.width, region.height, tiles.tile_height, tiles.tile_width, plan.batch,
              plan.chunk, plan.shared_structure, str(dtype), torch.device(device).type))
    return h.hexdigest()


def write_npy_resumable(synth, path, canvas, plan, options, key: str, styles=None, post=None):
    """Render ``plan`` of ``canvas`` to the .npy ``path`` in this process through its partial
    file (``io.resumable.PartialNpy``): with ``options.resume`` the units a killed render of the
    same ``key`` already wrote are skipped; every unit is journalled once written, so a render
    killed now can be resumed in turn. Memory: one tile."""
    from ..io.resumable import PartialNpy

    units = [list(u) for u in plan.unit_tiles()]
    region = plan.region
    part = PartialNpy(path, region.width, region.height, key, len(units), resume=options.resume)
    try:
        todo = [g for g in range(len(units)) if g not in part.done]
        tiles = synth.tiles(canvas, plan, options.progress, styles, select=set(todo).__contains__)
        if post is not None:
            tiles = post(tiles)
        tiles = iter(tiles)
        for g in todo:
            for _ in units[g]:
                t, px = next(tiles)
                part.write(t.y0 - region.y, t.x0 - region.x, px)
            part.unit_done(g)
    except BaseException:
        part.close()
        raise
    return part.commit()
