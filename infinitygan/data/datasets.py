"""The training/evaluation dataset named by a ``--data`` spec: the procedural source, an LMDB
pack or an image folder (each item float32 (3, F, F) in [-1, 1])."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..errors import UserError
from .folder import ImageFolderDataset
from .lmdb_pack import LMDBDataset, _is_lmdb_path
from .procedural import ProceduralLandscapes

__all__ = ["open_dataset"]


def open_dataset(spec: str, full_size: int = 197, pre_resize: int | None = None, seed: int = 0) -> Dataset:
    """``"procedural"`` | an LMDB (dir with data.mdb, or ``*.lmdb``) | an image folder.

    ``pre_resize`` applies to all three (the procedural images are rendered at ``full_size``, then
    pre-resized and resized back like a folder's; an LMDB keeps what it was packed with)."""
    if spec == "procedural":
        return ProceduralLandscapes(size=full_size, seed=seed, pre_resize=pre_resize)
    p = Path(spec).expanduser()
    if _is_lmdb_path(p):
        return LMDBDataset(p, full_size=full_size, pre_resize=pre_resize)
    if p.is_dir():
        return ImageFolderDataset(p, full_size=full_size, pre_resize=pre_resize)
    if p.exists():
        raise UserError(f"data must be a folder of images, an LMDB, or 'procedural': {spec}")
    raise UserError(f"data folder not found: {spec}")
