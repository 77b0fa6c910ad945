"""Reading the image to invert: any size, RGB or with an alpha channel, optional mask file.

Pixels become float32 in [-1, 1] (the generator's range); the mask is 1 where a pixel is known
(alpha > 127 or mask > 127) and only known pixels enter the objective.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UserError(f"cannot read image {path} (unreadable or not an image)") from None
    if img.width == 0 or img.height == 0:
        raise UserError(f"image {path} is empty")
    return img


def load_target(path: str | Path, mask: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (H, W, 3) float32 in [-1, 1], known (H, W) uint8 0/1) of an image file."""
    path = Path(path)
    img = _open(path)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA"))
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
