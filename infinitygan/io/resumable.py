"""Outputs that a killed render continues (``generate ... --resume``): .npy and .zarr.

A resumable render writes into a partial output beside the target, ``.NAME.partial`` (a file for
.npy, a folder for .zarr), and renames it into place once every tile is in: as with every other
output, nothing incomplete ever stands under the final name. A render killed part-way leaves the
partial output; the same command with ``--resume`` checks that it belongs to the same render (the
``key``: model, canvas, region, tile grid, dtype, device kind) and computes only the units of
work not yet written (a unit: the few neighbouring tiles of a row that share one structure pass;
a unit cut off by the kill is computed again whole). Without ``--resume`` a stale partial output
is started afresh.

Which formats can resume, and why:

* ``.npy``: a fixed layout (a header, then H x W x 3 float32), so every tile has its own place in
  the file and is written in place, in any order. A journal beside it (``.NAME.partial.journal``)
  lists the units written; a unit is journalled only after its pixels reached the file.
* ``.zarr``: one file per chunk and one chunk per tile, each written atomically by the store
  (``io.zarr_store``): a tile is done when its chunk exists; no journal is needed.
* ``.tif``: the tiles are deflate-compressed to sizes known only once written, appended one after
  the other, and their offsets are recorded in the directory tifffile writes last; a killed write
  has no usable directory. (An uncompressed TIFF could be written in place like .npy; we do not
  write one.)
* ``.png``: one zlib stream over all pixel rows, in order; continuing it needs the compressor's
  state at the moment of the kill, which is nowhere on disk.
* ``.jpg``: encoded in one go from the whole image in memory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import NonFiniteOutput

#: the extensions whose renders resume
RESUMABLE = (".npy", ".zarr")
FORMAT = "infinitygan-partial-render"


def partial_path(path: str | Path) -> Path:
    """Where the render of ``path`` is written until it is complete: ``.NAME.partial``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def check_resumable(path: str | Path) -> None:
    """UserError unless ``path``'s format can resume (see the module's notes for why)."""
    ext = Path(path).suffix.lower()
    if ext not in RESUMABLE:
        why = {".png": "a PNG is one compressed stream written in order",
               ".tif": "its compressed tiles are appended and indexed at the end",
               ".tiff": "its compressed tiles are appended and indexed at the end",
               ".jpg": "a JPEG is encoded from the whole image at once",
               ".jpeg": "a JPEG is encoded from the whole image at once"}.get(ext, "it is not written tile by tile")
        raise UserError(f"--resume needs a .npy or .zarr output ({why}): {Path(path).name}")


class PartialNpy:
    """The partial .npy of a render: raw float32 (height, width, 3), tiles written in place, the
    units of work written so far in a journal. ``key`` identifies the render (``resume`` refuses
    a partial output of another one); ``units``: how many units the plan has."""

    def __init__(self, path: str | Path, width: int, height: int, key: str, units: int, resume: bool = False):
        self.path = Path(path)
        self.width, self.height, self.units = int(width), int(height), int(units)
        self.data = partial_path(self.path)
        self.journal = self.data.with_name(self.data.name + ".journal")
        header = {"format": FORMAT, "version": 1, "key": key, "width": self.width, "height": self.height,
                  "units": self.units}
        self.done: frozenset[int] = frozenset()
        if resume and self.data.is_file() and self.journal.is_file():
            self.done = self._read_journal(header)
            self._file = open(self.data, "r+b")
            self._start = self._data_offset()
        else:
            self._file = open(self.data, "w+b")
            np.lib.format.write_array_header_2_0(
                self._file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                             "shape": (self.height, self.width, 3)})
            self._start = self._file.tell()
            self._file.truncate(self._start + self.height * self.width * 12)
            self._file.flush()
            with open(self.journal, "w") as j:
                j.write(json.dumps(header) + "\n")
        self._log = open(self.journal, "a")

    def _read_journal(self, header: dict) -> frozenset[int]:
        lines = self.journal.read_text().split("\n")
        try:
            found = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError):
            found = {}
        if found.get("format") != FORMAT:
            raise UserError(f"cannot resume {self.path}: {self.journal.name} is not a render journal")
        if found != header:
            raise UserError(f"cannot resume {self.path}: its interrupted render is of another image (model, canvas, "
                            f"region, tile grid, dtype or device differ); drop --resume to start afresh")
        done = set()
        for line in lines[1:-1]:  # the last piece has no newline yet: a write cut off by the kill
            if line.isdigit() and int(line) < self.units:
                done.add(int(line))
        return frozenset(done)

    def _data_offset(self) -> int:
        self._file.seek(0)
        try:
            version = np.lib.format.read_magic(self._file)
            read = np.lib.format.read_array_header_2_0 if version == (2, 0) else np.lib.format.read_array_header_1_0
            shape, fortran, dtype = read(self._file)
        except ValueError:
            raise UserError(f"cannot resume {self.path}: {self.data.name} is not a .npy file") from None
        if shape != (self.height, self.width, 3) or fortran or dtype != np.float32:
            raise UserError(f"cannot resume {self.path}: {self.data.name} holds another array")
        return self._file.tell()

    def write(self, y: int, x: int, tile: np.ndarray) -> None:
        """Tile pixels (h, w, 3), raw generator output, at row ``y``, column ``x`` of the image."""
        if not np.isfinite(tile).all():
            raise NonFiniteOutput("the generator produced NaN or infinite values (broken weights?): nothing was written")
        tile = np.ascontiguousarray(tile, dtype=np.float32)
        for r in range(tile.shape[0]):
            self._file.seek(self._start + ((y + r) * self.width + x) * 12)
            self._file.write(tile[r].tobytes())

    def unit_done(self, unit: int) -> None:
        """Unit ``unit``'s tiles are all written: flushed to the file, then journalled."""
        self._file.flush()
        self._log.write(f"{int(unit)}\n")
        self._log.flush()

    def close(self) -> None:
        for f in (self._file, self._log):
            if not f.closed:
                f.close()

    def commit(self) -> Path:
        """Every unit is written: the partial file becomes ``path`` (its journal goes)."""
        self.close()
        os.chmod(self.data, 0o666 & ~_umask())
        os.replace(self.data, self.path)
        self.journal.unlink(missing_ok=True)
        return self.path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
