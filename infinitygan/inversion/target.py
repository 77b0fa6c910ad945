"""Reading the image to invert: any size, RGB or with an alpha channel, optional mask file.

Pixels become float32 in [-1, 1] (the generator's range); the mask is 1 where a pixel is known
(alpha > 127 or mask > 127) and only known pixels enter the objective.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.images import open_image


#: largest image an inversion takes (pixels): its autograd graph over the footprint grows with
#: the area (a 256 x 256 inversion of paper-101 holds about 1 GB); also refused before decoding
MAX_PIXELS = 2048 * 2048


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    img = open_image(path, MAX_PIXELS, f"inversion takes at most {MAX_PIXELS // 2**20} megapixels (crop or "
                                       "downscale it)")
    try:
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise UserError(f"cannot read image {path} (unreadable or not an image)") from None
    if img.width == 0 or img.height == 0:
        raise UserError(f"image {path} is empty")
    return img


def _rgba8(img, path: Path) -> np.ndarray:
    """(H, W, 4) uint8 of any PIL image: 16-bit and float images scaled, not clipped."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
                raise UserError(f"{path}: a float image must hold values in [0, 1] (or [0, 255])")
            scale = 255.0 if a.max() <= 1.0 else 1.0
        else:
            scale = 1.0 / 257.0 if img.mode.startswith("I;16") or a.max() > 255 else 1.0
        grey = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    return np.asarray(img.convert("RGBA"))


def load_target(path: str | Path, mask: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (H, W, 3) float32 in [-1, 1], known (H, W) uint8 0/1) of an image file."""
    path = Path(path)
    img = _open(path)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = _rgba8(img, path)
    pixels = rgba[..., :3].astype(np.float32) / 127.5 - 1.0
    known = (rgba[..., 3] > 127) if has_alpha else np.ones(rgba.shape[:2], bool)
    if mask is not None:
        m = _open(Path(mask))
        if (m.width, m.height) != (img.width, img.height):
            raise UserError(f"mask {mask} is {m.width}x{m.height} but the image is {img.width}x{img.height}")
        known &= np.asarray(m.convert("L")) > 127
    if not known.any():
        raise UserError(f"{path}: no known pixels (the alpha channel or mask hides all of them)")
    return pixels, known.astype(np.uint8)
