"""Image writers that consume finished tiles (streaming) and write atomically.

Every writer takes an iterator of ``(row_offset, col_offset, tile)`` with tile float32 (h, w, 3)
of raw generator output, for the tiles of a row-major grid of ``tile_height x tile_width``
tiles (the last row and column may be smaller), in that order, and writes to a temporary file
beside the target that is renamed into place only when complete: an interrupted or failed run
never leaves a truncated image under the final name, and never replaces an existing file.
Tiles holding NaN or infinity stop the write (``NonFiniteOutput``).

* ``.tif`` / ``.tiff``: tiled BigTIFF (deflate) via tifffile, one TIFF tile per engine tile:
  memory O(one tile).
* ``.npy``: raw unclamped float32 (H, W, 3), each tile written in place: memory O(one tile).
* ``.png``: row-streamed PNG (our own chunk writer over zlib). PNG stores whole rows, so a row
  of tiles is held as 8-bit pixels: ``tile_height x width x 3`` bytes. ``png_tile_height``
  picks rows of tiles short enough to keep that buffer under ``PNG_BAND_BYTES`` (64 MB; at
  least 16 rows, so a 2^31-pixel-wide PNG holds 16 x 2^31 x 3 bytes).
* ``.jpg`` / ``.jpeg``: Pillow; holds the whole image, so it is refused above
  ``JPEG_MAX_PIXELS`` (64 megapixels) or 65,500 pixels a side: use .tif or .png.
* ``.zarr``: an OME-Zarr pyramid (``io.zarr_store``: a folder, one chunk per tile, zoom-out
  levels): memory O(one tile). Written here by one process; the render pipeline writes it from
  every rank of a torchrun group (``parallel.chunks``). A finished store replaces the older one.
"""
from __future__ import annotations

import os
import stat
import shutil
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".zarr")
#: TIFF tile of images saved from arrays (engine output uses the engine's tiles)
TIFF_TILE = 256
#: the largest 8-bit row buffer of the PNG writer
PNG_BAND_BYTES = 64 * 2 ** 20
#: PNG's largest side (the format's 31-bit sizes)
PNG_MAX_SIDE = 2 ** 31 - 1
#: JPEG is written from a whole image in memory
JPEG_MAX_PIXELS = 64 * 2 ** 20
JPEG_MAX_SIDE = 65500

Pieces = Iterable[tuple[int, int, np.ndarray]]


class NonFiniteOutput(UserError):
    """The generator produced NaN or infinity: nothing is written."""


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
    if ext == ".zarr" and path.exists():  # a folder: an older store is replaced, anything else refused
        if not (path.is_dir() and (path / "zarr.json").is_file()):
            raise UserError(f"output {path} exists and is not a Zarr store: not replacing it")
    elif path.is_dir():
        raise UserError(f"output is a directory: {path} (give a file name ending in {', '.join(EXTENSIONS)})")
    if ext not in EXTENSIONS:
        raise UserError(f"unknown output extension {ext or '(none)'!r} for {path} (use {', '.join(EXTENSIONS)})")
    return check_writable(path)


def check_input_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a regular file; UserError "WHAT not found" or "WHAT is not a regular
    file" (a folder, /dev/zero, a named pipe: reading those would block, never end, or fail)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise UserError(f"{what} {path} is {kind}")
    return path


def check_writable(path: Path) -> Path:
    """UserError unless ``path``'s folder exists and ``path`` can be (re)written there."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        above = folder
        while not above.exists() and above != above.parent:
            above = above.parent
        if above.exists() and not above.is_dir():
            raise UserError(f"output folder {folder} cannot exist: {above} is a file, not a folder")
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"output is not writable: {path}")
    try:  # what os.access cannot tell: /proc, /sys, read-only mounts (even for root)
        fd, probe = tempfile.mkstemp(prefix=".infinitygan-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"output is not writable: {path} (its folder refuses new files: {e.strerror or e})") from None
    return path


def open_image(path: str | Path, max_pixels: int, why: str):
    """A Pillow image of ``path`` whose header (not its pixels) has been read, refusing in one
    line (UserError) a file that is not a readable image and one of more than ``max_pixels``
    pixels (before decoding: a few bytes of PNG header can promise 60000 x 60000 pixels).
    ``why`` ends the size message, e.g. "inversion takes at most 4 megapixels"."""
    from PIL import Image, UnidentifiedImageError

    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings():  # Pillow's warning above 89 megapixels: the limit is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, checked from the header too
        import re

        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)) / 2 ** 20:,.0f} megapixels" if m else "too many pixels"
        raise UserError(f"image {path} holds {size}: {why}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UserError(f"cannot read image {path} (unreadable or not an image)") from None
    if img.width * img.height > max_pixels:
        img.close()
        raise UserError(f"image {path} is {img.width}x{img.height}: {why}")
    return img


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def output_bytes(ext: str, width: int, height: int) -> int:
    """Uncompressed size of an image of this format (.npy: float32, .zarr: 8-bit RGB and its
    zoom-out levels, a third more; others: 8-bit RGB)."""
    ext = ext.lower()
    return width * height * (12 if ext == ".npy" else 4 if ext == ".zarr" else 3)


def check_output(path: str | Path, width: int, height: int, force: bool = False) -> Path:
    """Everything about an output that can be refused before synthesis: the path (see
    ``check_output_path``), JPEG's in-memory limit, and an uncompressed size beyond the free
    space of the output's folder (``force`` overrides that for the compressed .png / .tif)."""
    path = check_output_path(path)
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg") and (width * height > JPEG_MAX_PIXELS or max(width, height) > JPEG_MAX_SIDE):
        raise UserError(f"JPEG is written from a whole image in memory and is limited to {JPEG_MAX_PIXELS // 2**20} "
                        f"megapixels and {JPEG_MAX_SIDE:,} pixels a side ({width}x{height} asked): use .tif or .png")
    if ext == ".png" and max(width, height) > PNG_MAX_SIDE:
        raise UserError(f"PNG holds at most {PNG_MAX_SIDE:,} pixels a side ({width}x{height} asked): use .tif")
    folder = path.parent if str(path.parent) else Path(".")
    need, free = output_bytes(ext, width, height), shutil.disk_usage(folder).free
    if need > free and (not force or ext == ".npy"):
        hint = "" if ext == ".npy" else "; --force writes anyway (compressed .png/.tif/.zarr are often smaller)"
        raise UserError(f"{width}x{height} needs up to {_gb(need)} uncompressed ({ext}) but {folder} has "
                        f"{_gb(free)} free{hint}")
    if ext == ".png":
        from .resources import check_memory

        check_memory(png_buffer_bytes(width), f"the PNG writer's row of tiles ({png_tile_height(width)} rows of "
                     f"{width:,} pixels)", "use .tif, whose tiles need no whole rows")
    return path


def png_tile_height(width: int, unit: int = 16) -> int:
    """Rows of tiles for PNG output: short enough that a row of 8-bit pixels stays within
    PNG_BAND_BYTES (at least ``unit`` rows)."""
    return max(unit, PNG_BAND_BYTES // (3 * width) // unit * unit)


def png_buffer_bytes(width: int, unit: int = 16) -> int:
    """Memory of ``write_png_stream`` for this width: its row of tiles (``png_tile_height`` rows),
    the previous pixel row, and the filtered rows it compresses at a time (about 1 MB)."""
    return (png_tile_height(width, unit) + 1) * width * 3 + 2 * (width * 3 + 1) + (1 << 20)


def _checked_uint8(tile: np.ndarray) -> np.ndarray:
    if not np.isfinite(tile).all():
        raise NonFiniteOutput("the generator produced NaN or infinite values (broken weights?): nothing was written")
    return to_uint8(tile)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it if the block succeeds.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask),
    not mkstemp's 0600, or those of the file it replaces; a symbolic link is written through
    (its target is replaced, the link stays).
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()  # write the file the link points to; the link stays a link
    mode = 0o666 & ~_umask()
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)  # a replaced file keeps its permissions
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_stream(path: Path, width: int, height: int, tile_height: int, pieces: Pieces, level: int = 4) -> None:
    """Row-streamed 8-bit RGB PNG; rows filtered with 'Up' (difference to the row above).

    Holds one row of tiles as 8-bit pixels (``band``) and filters / compresses it a few pixel
    rows at a time, so the writer's memory is the band plus about 1 MB.
    """
    comp = zlib.compressobj(level)
    prev = np.zeros((width * 3,), np.uint8)
    band = np.empty((tile_height, width, 3), np.uint8)
    step = max(1, (1 << 20) // (width * 3 + 1))  # pixel rows filtered per compress call
    up = np.empty((step, width * 3 + 1), np.uint8)
    up[:, 0] = 2  # filter type 'Up'
    rows_done = 0
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for y, x, tile in pieces:
            h, w = tile.shape[:2]
            band[:h, x: x + w] = _checked_uint8(tile)
            if x + w < width:
                continue
            px = band[:h].reshape(h, width * 3)
            for r0 in range(0, h, step):
                n = min(step, h - r0)
                np.subtract(px[r0], prev if r0 == 0 else px[r0 - 1], out=up[0, 1:])
                if n > 1:
                    np.subtract(px[r0 + 1: r0 + n], px[r0: r0 + n - 1], out=up[1:n, 1:])
                data = comp.compress(memoryview(up[:n]).cast("B"))
                if data:
                    f.write(_png_chunk(b"IDAT", data))
            prev = px[h - 1].copy()
            rows_done += h
        f.write(_png_chunk(b"IDAT", comp.flush()))
        f.write(_png_chunk(b"IEND", b""))
    if rows_done != height:
        raise RuntimeError(f"PNG writer got {rows_done} rows, expected {height}")


def write_npy_stream(path: Path, width: int, height: int, pieces: Pieces) -> None:
    """Raw float32 (H, W, 3) .npy; each tile is written in place, row by row."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                "shape": (height, width, 3)})
        start = f.tell()
        f.truncate(start + height * width * 12)
        for y, x, tile in pieces:
            if not np.isfinite(tile).all():
                raise NonFiniteOutput("the generator produced NaN or infinite values (broken weights?): "
                                      "nothing was written")
            tile = np.ascontiguousarray(tile, dtype=np.float32)
            for r in range(tile.shape[0]):
                f.seek(start + ((y + r) * width + x) * 12)
                f.write(tile[r].tobytes())


def write_tiff_stream(path: Path, width: int, height: int, tile_height: int, tile_width: int,
                      pieces: Pieces) -> None:
    """Tiled BigTIFF (deflate), one TIFF tile per engine tile (sizes are multiples of 16)."""
    import tifffile

    def tiles() -> Iterator[np.ndarray]:
        for _, _, tile in pieces:
            h, w = tile.shape[:2]
            if (h, w) == (tile_height, tile_width):
                yield _checked_uint8(tile)
            else:  # the last row / column: zero-padded to a whole TIFF tile
                out = np.zeros((tile_height, tile_width, 3), np.uint8)
                out[:h, :w] = _checked_uint8(tile)
                yield out

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(tile_height, tile_width),
                  photometric="rgb", compression="zlib")


def write_jpeg(path: Path, width: int, height: int, pieces: Pieces) -> None:
    from PIL import Image

    img = np.empty((height, width, 3), np.uint8)
    for y, x, tile in pieces:
        img[y: y + tile.shape[0], x: x + tile.shape[1]] = _checked_uint8(tile)
    Image.fromarray(img).save(path, format="JPEG", quality=95)


def write_tiles(path: str | Path, width: int, height: int, tile_height: int, tile_width: int,
                pieces: Pieces, force: bool = False) -> Path:
    """Write the tiles to ``path`` (format from the extension), atomically."""
    path = check_output(path, width, height, force)
    ext = path.suffix.lower()
    if ext in (".tif", ".tiff") and (tile_height % 16 or tile_width % 16):
        raise ValueError(f"TIFF tiles must be multiples of 16, got {tile_height}x{tile_width}")
    if ext == ".zarr":
        from .zarr_store import write_zarr_stream

        write_zarr_stream(path, width, height, tile_height, tile_width, pieces)
        return path
    with atomic_path(path) as tmp:
        if ext == ".png":
            write_png_stream(tmp, width, height, tile_height, pieces)
        elif ext in (".tif", ".tiff"):
            write_tiff_stream(tmp, width, height, tile_height, tile_width, pieces)
        elif ext == ".npy":
            write_npy_stream(tmp, width, height, pieces)
        else:
            write_jpeg(tmp, width, height, pieces)
    return path


def array_pieces(image: np.ndarray, tile: int = TIFF_TILE) -> Iterator[tuple[int, int, np.ndarray]]:
    """An (H, W, 3) array as a row-major grid of tile x tile views."""
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            yield y, x, image[y: y + tile, x: x + tile]


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Save a float image (H, W, 3) of raw generator output (about [-1, 1]; any supported
    extension; .npy keeps the raw float32 values)."""
    try:
        image = np.asarray(image, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError("expected an (H, W, 3) array of numbers") from None
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise UserError(f"expected a non-empty (H, W, 3) image, got shape {image.shape}")
    return write_tiles(path, image.shape[1], image.shape[0], TIFF_TILE, TIFF_TILE, array_pieces(image))
