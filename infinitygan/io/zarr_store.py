"""An OME-Zarr image pyramid written tile by tile, by any number of processes (``--out NAME.zarr``).

Layout (Zarr v3, OME-NGFF 0.5, so that napari, vizarr and other OME-Zarr viewers open it)::

    NAME.zarr/zarr.json       the group; attributes "ome" (version 0.5, multiscales: axes c, y, x;
                              one dataset per level with its scale and translation; omero: the
                              channels as red, green, blue) and "infinitygan" (the render's key,
                              tile, levels)
    NAME.zarr/0 ... NAME.zarr/L
                              uint8 arrays (3, H_k, W_k), H_k = ceil(H / 2^k), in chunks of one
                              tile (3, tile_height, tile_width); level 0 holds the pixels a .png
                              of the render holds; level L is the first that fits one chunk

Level 0's chunks are the render's tiles, so whoever rendered a tile writes its chunk: no pixel
travels to another process. A chunk of level k >= 1 covers the 2 x 2 chunks of level k - 1 beneath
it, which may have been rendered by different processes: each chunk, when written, leaves its
2x-downsampled quarter (the mean of each 2 x 2 block, rounded; an odd last row or column is
repeated) in a scratch folder (``NAME.zarr/.pieces``), and whoever leaves the last quarter of a
chunk assembles it from the four quarters, writes it and leaves its own quarter for the level
above. The levels so grow as tiles finish, from quarters, never by reading the image back; a
final sweep (``sweep``), level by level after a barrier, assembles whatever two processes both
left to the other. Memory per process: a tile and one chunk.

Every chunk is written atomically by zarr's local store (a temporary file, then a rename), and a
chunk's quarter is written before the chunk itself: a chunk that exists is complete and so is its
quarter. A killed render therefore resumes (``io.resumable``) by rendering the tiles whose level-0
chunk is missing and sweeping the levels.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError
from .images import NonFiniteOutput, to_uint8

#: NGFF version written
NGFF_VERSION = "0.5"
#: scratch folder of the quarters, inside the store (removed when the pyramid is complete)
PIECES = ".pieces"
_CHANNELS = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))


def level_shapes(height: int, width: int, tile_height: int, tile_width: int) -> list[tuple[int, int]]:
    """(H_k, W_k) of levels 0 .. L: halved (rounding up) until a level fits one chunk."""
    shapes = [(int(height), int(width))]
    while shapes[-1][0] > tile_height or shapes[-1][1] > tile_width:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def half(a: np.ndarray) -> np.ndarray:
    """(3, h, w) uint8 -> (3, ceil(h / 2), ceil(w / 2)): the mean of each 2 x 2 block, rounded
    half up; an odd last row or column is repeated (it averages with itself)."""
    if a.shape[1] % 2:
        a = np.concatenate([a, a[:, -1:]], axis=1)
    if a.shape[2] % 2:
        a = np.concatenate([a, a[:, :, -1:]], axis=2)
    s = a[:, 0::2, 0::2].astype(np.uint16)
    s += a[:, 1::2, 0::2]
    s += a[:, 0::2, 1::2]
    s += a[:, 1::2, 1::2]
    s += 2
    return (s // 4).astype(np.uint8)


def pyramid(image: np.ndarray, tile_height: int, tile_width: int) -> list[np.ndarray]:
    """The levels of a whole (3, H, W) uint8 image, as the store computes them chunk by chunk
    (for tests and small images: the whole image in memory)."""
    out = [image]
    for _ in level_shapes(image.shape[1], image.shape[2], tile_height, tile_width)[1:]:
        out.append(half(out[-1]))
    return out


def ome_attributes(shapes: list[tuple[int, int]], name: str) -> dict:
    """The group's "ome" attribute (NGFF 0.5): one multiscale image, axes c, y, x, a scale and a
    translation per level (a level-k pixel is the mean of 2^k x 2^k level-0 pixels: its centre
    lies (2^k - 1) / 2 level-0 pixels right of and below theirs), RGB channels for viewers."""
    datasets = []
    for k in range(len(shapes)):
        f = float(2 ** k)
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, f, f]},
            {"type": "translation", "translation": [0.0, (f - 1) / 2, (f - 1) / 2]}]})
    window = {"min": 0, "max": 255, "start": 0, "end": 255}
    channels = [{"label": label, "color": color, "window": window, "active": True, "coefficient": 1.0,
                 "family": "linear", "inverted": False} for label, color in _CHANNELS]
    return {"version": NGFF_VERSION,
            "multiscales": [{"name": name,
                             "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                                      {"name": "x", "type": "space"}],
                             "datasets": datasets,
                             "type": "mean of 2x2 blocks",
                             "metadata": {"description": "each level the 2x2-block mean of the one below, "
                                                         "rounded half up; an odd last row or column repeated"}}],
            "omero": {"channels": channels, "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0}}}


def _zarr():
    try:
        import zarr
    except ImportError:
        raise UserError("writing .zarr needs zarr-python 3 (pip install 'zarr>=3')") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise UserError(f"writing .zarr needs zarr-python 3 or later (found {zarr.__version__}): "
                        "pip install -U 'zarr>=3'")
    return zarr


class ZarrPyramid:
    """The pyramid store at ``root`` of an image ``height`` x ``width`` rendered in tiles of
    ``tile_height`` x ``tile_width`` (even sizes: a level-1 chunk holds the quarters of 2 x 2
    tiles). ``create`` it once (one process), then open it in every process that writes tiles."""

    def __init__(self, root: str | Path, height: int, width: int, tile_height: int, tile_width: int):
        if tile_height % 2 or tile_width % 2:
            raise ValueError(f"tiles of a .zarr pyramid must have even sizes, got {tile_height}x{tile_width}")
        self.root = Path(root)
        self.th, self.tw = int(tile_height), int(tile_width)
        self.shapes = level_shapes(height, width, self.th, self.tw)
        self._arrays: dict[int, object] = {}

    @property
    def top(self) -> int:
        """The index of the last level (the one that fits a chunk)."""
        return len(self.shapes) - 1

    def grid(self, k: int) -> tuple[int, int]:
        """Chunks of level ``k``: (rows, columns)."""
        h, w = self.shapes[k]
        return math.ceil(h / self.th), math.ceil(w / self.tw)

    # ------------------------------------------------------------------------- creation
    def create(self, key: str, name: str) -> None:
        """Write the group, the empty level arrays and the metadata (one process; the store's
        folder must not hold another store)."""
        zarr = _zarr()
        group = zarr.open_group(str(self.root), mode="w", zarr_format=3)
        for k, (h, w) in enumerate(self.shapes):
            group.create_array(str(k), shape=(3, h, w), chunks=(3, self.th, self.tw), dtype="uint8", fill_value=0,
                               chunk_key_encoding={"name": "default", "separator": "/"},
                               dimension_names=["c", "y", "x"])
        for k in range(1, len(self.shapes)):
            (self.root / PIECES / str(k)).mkdir(parents=True, exist_ok=True)
        group.attrs.update({"ome": ome_attributes(self.shapes, name),
                            "infinitygan": {"key": key, "tile": [self.th, self.tw], "levels": len(self.shapes),
                                            "complete": False}})

    def key(self) -> str | None:
        """The key of the render this store holds (None: not one of ours, or unreadable)."""
        try:
            meta = json.loads((self.root / "zarr.json").read_text())
            ours = meta["attributes"]["infinitygan"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if ours.get("tile") != [self.th, self.tw] or ours.get("levels") != len(self.shapes):
            return None
        return ours.get("key")

    def mark_complete(self) -> None:
        """Every chunk of every level is written: the scratch quarters go, the metadata says so."""
        zarr = _zarr()
        shutil.rmtree(self.root / PIECES, ignore_errors=True)
        group = zarr.open_group(str(self.root), mode="r+", zarr_format=3)
        ours = dict(group.attrs["infinitygan"])
        ours["complete"] = True
        group.attrs["infinitygan"] = ours

    # --------------------------------------------------------------------------- chunks
    def _chunk_file(self, k: int, cy: int, cx: int) -> Path:
        return self.root / str(k) / "c" / "0" / str(cy) / str(cx)

    def has_chunk(self, k: int, cy: int, cx: int) -> bool:
        return self._chunk_file(k, cy, cx).is_file()

    def tile_done(self, i: int, j: int) -> bool:
        """Tile (row i, column j) of the render is written (its level-0 chunk exists)."""
        return self.has_chunk(0, i, j)

    def _array(self, k: int):
        if k not in self._arrays:
            self._arrays[k] = _zarr().open_array(str(self.root / str(k)), mode="r+")
        return self._arrays[k]

    def _write_chunk(self, k: int, cy: int, cx: int, data: np.ndarray) -> None:
        zarr = _zarr()
        y, x = cy * self.th, cx * self.tw
        with zarr.config.set({"array.write_empty_chunks": True}):  # a black chunk is a written chunk
            self._array(k)[:, y: y + data.shape[1], x: x + data.shape[2]] = data

    def _piece_file(self, k: int, cy: int, cx: int, dy: int, dx: int) -> Path:
        """The quarter (dy, dx) of chunk (cy, cx) of level k."""
        return self.root / PIECES / str(k) / f"{cy}.{cx}.{dy}{dx}.npy"

    def _put_piece(self, k: int, cy: int, cx: int, data: np.ndarray) -> None:
        """Leave chunk (cy, cx) of level k - 1's quarter for level k (atomic: temp + rename)."""
        path = self._piece_file(k, cy // 2, cx // 2, cy % 2, cx % 2)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, half(data))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _children(self, k: int, cy: int, cx: int) -> list[tuple[int, int]]:
        """The quarters (dy, dx) that chunk (cy, cx) of level k is made of (fewer at the edges)."""
        rows, cols = self.grid(k - 1)
        return [(dy, dx) for dy in (0, 1) for dx in (0, 1) if 2 * cy + dy < rows and 2 * cx + dx < cols]

    def _assemble(self, k: int, cy: int, cx: int) -> np.ndarray | None:
        """Chunk (cy, cx) of level k from its quarters, or None while one is missing."""
        h = min(self.th, self.shapes[k][0] - cy * self.th)
        w = min(self.tw, self.shapes[k][1] - cx * self.tw)
        out = np.empty((3, h, w), np.uint8)
        for dy, dx in self._children(k, cy, cx):
            try:
                q = np.load(self._piece_file(k, cy, cx, dy, dx))
            except FileNotFoundError:
                return None
            y, x = dy * self.th // 2, dx * self.tw // 2
            out[:, y: y + q.shape[1], x: x + q.shape[2]] = q
        return out

    def _store(self, k: int, cy: int, cx: int, data: np.ndarray) -> None:
        """Write chunk (cy, cx) of level k: its quarter for the level above first, then the chunk."""
        if k < self.top:
            self._put_piece(k + 1, cy, cx, data)
        self._write_chunk(k, cy, cx, data)

    def _climb(self, k: int, cy: int, cx: int) -> None:
        """After a chunk of level k - 1 beneath it was stored: build chunk (cy, cx) of level k and
        the ones above while their quarters are all there."""
        while k <= self.top and not self.has_chunk(k, cy, cx):
            data = self._assemble(k, cy, cx)
            if data is None:
                return
            self._store(k, cy, cx, data)
            k, cy, cx = k + 1, cy // 2, cx // 2

    def write_tile(self, i: int, j: int, pixels: np.ndarray) -> None:
        """Tile (row i, column j): raw generator output (h, w, 3) float, stored as uint8 like .png
        (NonFiniteOutput for NaN or infinity), then the levels above it as far as they are
        complete."""
        if not np.isfinite(pixels).all():
            raise NonFiniteOutput("the generator produced NaN or infinite values (broken weights?): "
                                  "nothing more was written")
        self._store(0, i, j, np.ascontiguousarray(to_uint8(pixels).transpose(2, 0, 1)))
        self._climb(1, i // 2, j // 2)

    def sweep(self, k: int, mine=lambda index: True) -> None:
        """Build every missing chunk of level ``k`` that ``mine`` (a predicate on the chunk's
        row-major index) picks; all of level k - 1 must be complete (after a barrier)."""
        rows, cols = self.grid(k)
        for cy in range(rows):
            for cx in range(cols):
                if mine(cy * cols + cx) and not self.has_chunk(k, cy, cx):
                    data = self._assemble(k, cy, cx)
                    if data is None:
                        raise RuntimeError(f"level {k} chunk ({cy}, {cx}) of {self.root} lacks a quarter "
                                           "of the level below")
                    self._store(k, cy, cx, data)


def replace_store(partial: str | Path, path: str | Path) -> Path:
    """Rename the finished store ``partial`` to ``path``; an older store there is moved aside
    first and removed after (the new one is never half in place, the old one never half gone)."""
    partial, path = Path(partial), Path(path)
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
        os.rename(path, old)
    os.rename(partial, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def write_zarr_stream(path: str | Path, width: int, height: int, tile_height: int, tile_width: int,
                      pieces: Iterable[tuple[int, int, np.ndarray]], key: str = "") -> Path:
    """Write the pieces (row offset, column offset, float tile) of a row-major grid of
    ``tile_height`` x ``tile_width`` tiles as the OME-Zarr store ``path``, in this process:
    built in ``.NAME.partial`` beside it and renamed into place when complete."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if partial.exists():
        shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
    store = ZarrPyramid(partial, height, width, tile_height, tile_width)
    store.create(key, path.stem)
    for y, x, tile in pieces:
        store.write_tile(y // tile_height, x // tile_width, tile)
    for k in range(1, store.top + 1):
        store.sweep(k)
    store.mark_complete()
    return replace_store(partial, path)
