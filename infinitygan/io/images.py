"""Image writers that consume horizontal bands (streaming) and write atomically.

Every writer takes an iterator of ``(row_offset, band)`` with band float32 (h, W, 3) of raw
generator output, in top-to-bottom order, and writes to a temporary file beside the target
that is renamed into place only when complete (an interrupted run never leaves a truncated
image under the final name).

* ``.png``: row-streamed PNG (our own chunk writer over zlib): memory O(one band).
* ``.tif`` / ``.tiff``: tiled BigTIFF via tifffile, tiles fed from the bands: memory O(one band).
* ``.npy``: raw unclamped float32 (H, W, 3), header then rows: memory O(one band).
* ``.jpg`` / ``.jpeg``: Pillow; holds the whole image (JPEG is limited to 65,500 pixels a side).
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
TIFF_TILE = 256

Bands = Iterable[tuple[int, np.ndarray]]


def to_uint8(x: np.ndarray, rows_per_chunk: int = 64) -> np.ndarray:
    """[-1, 1] floats (H, W, C) -> uint8 (clamped, rounded), with float temporaries of at most
    ``rows_per_chunk`` rows (keeps memory of wide bands low)."""
    out = np.empty(x.shape, np.uint8)
    for i in range(0, x.shape[0], rows_per_chunk):
        t = x[i: i + rows_per_chunk] + np.float32(1.0)
        t *= np.float32(127.5)
        np.rint(t, out=t)
        np.clip(t, 0, 255, out=t)
        out[i: i + rows_per_chunk] = t
    return out


def check_output_path(path: str | Path) -> Path:
    """Validate the extension and that the folder exists and is writable (before any work)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise UserError(f"unknown output extension {ext or '(none)'!r} for {path} (use {', '.join(EXTENSIONS)})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"output is not writable: {path}")
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it if the block succeeds.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask),
    not mkstemp's 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_stream(path: Path, width: int, height: int, bands: Bands, level: int = 4) -> None:
    """Row-streamed 8-bit RGB PNG; rows filtered with 'Up' (difference to the row above)."""
    comp = zlib.compressobj(level)
    prev = np.zeros((width * 3,), np.uint8)
    rows_done = 0
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for _, band in bands:
            px = to_uint8(band).reshape(band.shape[0], width * 3)
            up = np.empty_like(px)
            up[0] = px[0] - prev
            up[1:] = px[1:] - px[:-1]
            prev = px[-1].copy()
            raw = np.concatenate([np.full((px.shape[0], 1), 2, np.uint8), up], axis=1)
            data = comp.compress(raw.tobytes())
            if data:
                f.write(_png_chunk(b"IDAT", data))
            rows_done += px.shape[0]
        f.write(_png_chunk(b"IDAT", comp.flush()))
        f.write(_png_chunk(b"IEND", b""))
    if rows_done != height:
        raise RuntimeError(f"PNG writer got {rows_done} rows, expected {height}")


def write_npy_stream(path: Path, width: int, height: int, bands: Bands) -> None:
    """Raw float32 (H, W, 3) .npy, streamed row band by row band."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                "shape": (height, width, 3)})
        for _, band in bands:
            f.write(np.ascontiguousarray(band, dtype=np.float32).tobytes())


def _tiff_tiles(width: int, bands: Bands, tile: int) -> Iterator[np.ndarray]:
    """Re-chunk bands of any height into rows of TIFF tiles (tile x tile x 3, edges zero-padded)."""
    buf = np.zeros((0, width, 3), np.uint8)
    n_cols = -(-width // tile)

    def emit(rows: np.ndarray):
        for j in range(n_cols):
            t = np.zeros((tile, tile, 3), np.uint8)
            piece = rows[:, j * tile: (j + 1) * tile]
            t[: piece.shape[0], : piece.shape[1]] = piece
            yield t

    for _, band in bands:
        buf = np.concatenate([buf, to_uint8(band)], axis=0)
        while buf.shape[0] >= tile:
            yield from emit(buf[:tile])
            buf = buf[tile:]
    if buf.shape[0]:
        yield from emit(buf)


def write_tiff_stream(path: Path, width: int, height: int, bands: Bands) -> None:
    """Tiled (256 x 256) BigTIFF, deflate-compressed, streamed from the bands."""
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(_tiff_tiles(width, bands, TIFF_TILE), shape=(height, width, 3), dtype=np.uint8,
                  tile=(TIFF_TILE, TIFF_TILE), photometric="rgb", compression="zlib")


def write_pillow(path: Path, width: int, height: int, bands: Bands, fmt: str) -> None:
    from PIL import Image

    if fmt == "JPEG" and max(width, height) > 65500:
        raise UserError("JPEG is limited to 65,500 pixels per side: use .png or .tif")
    img = np.empty((height, width, 3), np.uint8)
    for y, band in bands:
        img[y: y + band.shape[0]] = to_uint8(band)
    Image.fromarray(img).save(path, format=fmt, quality=95)


def write_bands(path: str | Path, width: int, height: int, bands: Bands) -> Path:
    """Write the bands to ``path`` (format from the extension), atomically."""
    path = check_output_path(path)
    ext = path.suffix.lower()
    with atomic_path(path) as tmp:
        if ext == ".png":
            write_png_stream(tmp, width, height, bands)
        elif ext in (".tif", ".tiff"):
            write_tiff_stream(tmp, width, height, bands)
        elif ext == ".npy":
            write_npy_stream(tmp, width, height, bands)
        else:
            write_pillow(tmp, width, height, bands, "JPEG")
    return path


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Save a float image (H, W, 3) of raw generator output (any supported extension)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return write_bands(path, image.shape[1], image.shape[0], [(0, image)])
