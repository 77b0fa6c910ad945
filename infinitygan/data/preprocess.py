"""Listing image folders and the paper's preprocessing.

Protocol (paper): every image is converted to RGB, center-square cropped, optionally
Lanczos pre-resized to ``pre_resize`` (128 in the paper's main protocol), then Lanczos
resized to ``full_size`` (197).

Shapes / dtypes:
    preprocess(img, F, pre)            -> float32 (3, F, F) in [-1, 1]
    preprocess_uint8(img, F, pre)      -> uint8 (F, F, 3)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "MIN_IMAGE_SIDE", "list_images", "preprocess", "preprocess_uint8"]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
#: images whose shorter side is smaller than this are not used (upsampling them gives blur)
MIN_IMAGE_SIDE = 32


# ------------------------------------------------------------------------ listing
def list_images(folder: str | os.PathLike) -> list[Path]:
    """All jpg/jpeg/png/webp files (any case) under ``folder``, recursively, sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {folder}")
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not files:
        raise UserError(f"no images (jpg/png/webp) found in {folder}")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


# ------------------------------------------------------------------- preprocessing
def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or arr.max(initial=0.0) > 255.0:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def preprocess_uint8(img: Image.Image, full_size: int, pre_resize: int | None = None) -> np.ndarray:
    """The paper's preprocessing, as a (full_size, full_size, 3) uint8 array.

    EXIF orientation is applied, the image is converted to RGB (grayscale, palette,
    RGBA/LA with alpha composited on white, 16-bit), center-square cropped, optionally
    Lanczos-resized to ``pre_resize``, then Lanczos-resized to ``full_size``.  Images
    (or pre-resized squares) smaller than ``full_size`` are *upsampled* by the last step.
    """
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF should not make an otherwise fine image unusable
        pass
    img = _to_rgb(img)
    w, h = img.size
    s = min(w, h)
    if w != h:
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if pre_resize and s != pre_resize:
        img = img.resize((pre_resize, pre_resize), Image.Resampling.LANCZOS)
    if img.size[0] != full_size:
        img = img.resize((full_size, full_size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def _uint8_to_tensor(arr: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()
    return x.div_(127.5).sub_(1.0)


def preprocess(img: Image.Image, full_size: int, pre_resize: int | None = None) -> torch.Tensor:
    """PIL image -> float32 tensor (3, full_size, full_size) in [-1, 1].

    RGB conversion, center-square crop, optional Lanczos pre-resize to ``pre_resize``
    (128 in the paper's main protocol), Lanczos resize to ``full_size`` (197).  Images
    smaller than ``full_size`` are upsampled.  See :func:`preprocess_uint8`.
    """
    return _uint8_to_tensor(preprocess_uint8(img, full_size, pre_resize))


def _load_uint8(path: Path, full_size: int, pre_resize: int | None) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return preprocess_uint8(im, full_size, pre_resize)


def _shorter_side(path: Path) -> int | None:
    """Shorter side of an image after a cheap header/structure check (``Image.verify``; full
    decoding happens later); None when the file is unreadable."""
    try:
        with Image.open(path) as im:
            side = min(im.size)
            im.verify()
        return side
    except Exception:
        return None


def _scan(folder: str | os.PathLike) -> tuple[list[Path], int]:
    """(usable images, count of unreadable ones) of a folder. Images whose shorter side is below
    ``MIN_IMAGE_SIDE`` are left out too, with one warning for all of them."""
    files = list_images(folder)
    sides = [_shorter_side(p) for p in files]
    good = [p for p, s in zip(files, sides) if s is not None and s >= MIN_IMAGE_SIDE]
    small = [p for p, s in zip(files, sides) if s is not None and s < MIN_IMAGE_SIDE]
    if small:
        warnings.warn(f"skipped {len(small)} images smaller than {MIN_IMAGE_SIDE} px in {folder} "
                      f"(e.g. {small[0].name}): they would be upsampled to blur", stacklevel=3)
    return good, sum(s is None for s in sides)


def _no_readable(folder, n: int) -> UserError:
    return UserError(f"no usable images in {folder} ({n} image files could not be decoded; images smaller "
                     f"than {MIN_IMAGE_SIDE} px are skipped)")
