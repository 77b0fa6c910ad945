"""A folder tree of photos as a dataset of preprocessed full images.

Shapes / dtypes:
    ImageFolderDataset[i]              -> float32 (3, F, F) in [-1, 1]
    ImageFolderDataset.load_uint8(i, size=None) -> uint8 (S, S, 3): the preprocessing chain ending
                                          at S (default F); S = pre_resize gives the pre-resized image
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .preprocess import _load_uint8, _no_readable, _scan, _uint8_to_tensor

__all__ = ["ImageFolderDataset"]


class ImageFolderDataset(Dataset):
    """Preprocessed full images from a folder tree: item -> float32 (3, F, F) in [-1, 1].

    Unreadable files are skipped at construction (``skipped`` counts them; one warning is
    emitted).  A file that passes the cheap check but fails to decode later (e.g. a
    truncated JPEG) is replaced by the next readable image, with a warning.
    """

    def __init__(self, folder: str | os.PathLike, full_size: int = 197, pre_resize: int | None = None):
        self.folder = Path(folder)
        self.full_size = int(full_size)
        self.pre_resize = int(pre_resize) if pre_resize else None
        self.files, self.skipped = _scan(folder)
        if not self.files:
            raise _no_readable(folder, self.skipped)
        if self.skipped:
            warnings.warn(f"skipped {self.skipped} unreadable images in {folder}", stacklevel=2)
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, index: int, size: int | None = None) -> np.ndarray:
        """Preprocessed image ``index`` as (S, S, 3) uint8, S = ``size`` or the full size (raises
        if it cannot be decoded). The chain is the same (crop, pre-resize, resize to S): with
        S = ``pre_resize`` it stops at the pre-resized image."""
        return _load_uint8(self.files[index], int(size) if size else self.full_size, self.pre_resize)

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.files)
        index = int(index) % n
        for k in range(n):
            i = (index + k) % n
            if i in self._bad:
                continue
            try:
                return _uint8_to_tensor(self.load_uint8(i))
            except Exception as e:  # corrupt beyond the header check
                self._bad.add(i)
                warnings.warn(f"could not decode {self.files[i]} ({e}); using the next image", stacklevel=2)
        raise _no_readable(self.folder, n)
