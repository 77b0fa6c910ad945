"""LMDB packs of preprocessed images: writing them (``prepare``) and reading them, with one
environment per pack and process shared by all readers and closed before ``fork``.

Shapes / dtypes:
    LMDBDataset[i]                     -> float32 (3, F, F) in [-1, 1]
    LMDBDataset.load_uint8(i)          -> uint8 (F, F, 3)
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError
from .preprocess import _load_uint8, _no_readable, _scan, _uint8_to_tensor

__all__ = ["prepare_lmdb", "LMDBDataset"]


META_KEY = b"__meta__"


def _require_lmdb():
    try:
        import lmdb
    except ImportError:  # pragma: no cover - depends on the environment
        raise UserError("LMDB datasets need the 'lmdb' package: pip install lmdb") from None
    return lmdb


def prepare_lmdb(
    folder: str | os.PathLike,
    out_path: str | os.PathLike,
    full_size: int = 197,
    pre_resize: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Pack a folder of images into an LMDB of preprocessed images; returns the count.

    Layout: keys ``b"%08d" % i`` -> PNG bytes of the (F, F, 3) uint8 preprocessed image
    (lossless, so :class:`LMDBDataset` reproduces :class:`ImageFolderDataset` exactly);
    ``b"__meta__"`` -> JSON ``{"count", "full_size", "pre_resize", "format": "png",
    "skipped", "source"}``.  ``out_path`` is an LMDB directory (``data.mdb`` inside),
    written under a temporary name and renamed into place when complete.
    """
    lmdb = _require_lmdb()
    from tqdm import tqdm

    out = Path(out_path).expanduser()
    if out.exists() and not overwrite:
        raise UserError(f"output already exists: {out_path} (remove it, or use --overwrite)")
    files, skipped = _scan(folder)
    if not files:
        raise _no_readable(folder, skipped)
    full_size = int(full_size)
    pre_resize = int(pre_resize) if pre_resize else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    # Upper bound: raw pixels + slack; the map is sparse on Linux/macOS.
    map_size = max(len(files) * (full_size * full_size * 3 + 4096) * 2, 64 << 20)
    env = lmdb.open(str(tmp), map_size=map_size, subdir=True, readahead=False, meminit=False, lock=True)
    count = 0
    try:
        txn = env.begin(write=True)
        for path in tqdm(files, desc="prepare", unit="img", disable=not progress):
            try:
                arr = _load_uint8(path, full_size, pre_resize)
            except Exception:
                skipped += 1
                continue
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG", compress_level=4)
            txn.put(b"%08d" % count, buf.getvalue())
            count += 1
            if count % 512 == 0:
                txn.commit()
                txn = env.begin(write=True)
        meta = {"count": count, "full_size": full_size, "pre_resize": pre_resize, "format": "png",
                "skipped": skipped, "source": str(folder)}
        txn.put(META_KEY, json.dumps(meta).encode())
        txn.commit()
        env.sync()
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    env.close()
    if count == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _no_readable(folder, skipped)
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable images in {folder}", stacklevel=2)
    if out.exists():  # overwrite=True
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return count


# One environment per LMDB per process: py-lmdb refuses to open the same files twice in a
# process, and an environment must not cross fork().  All datasets share the cached env;
# it is closed just before any fork (DataLoader workers) and reopened lazily afterwards.
_ENVS: dict[tuple[str, bool], object] = {}
_ENVS_PID = os.getpid()


def _close_all_envs() -> None:
    for env in _ENVS.values():
        try:
            env.close()
        except Exception:
            pass
    _ENVS.clear()


def _forget_envs_in_child() -> None:
    global _ENVS_PID
    _ENVS.clear()
    _ENVS_PID = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_all_envs, after_in_child=_forget_envs_in_child)


_ENVS_LOCK = threading.Lock()  # the loading threads of PatchDataset.__getitems__ share the envs


def _shared_env(path: Path, subdir: bool):
    with _ENVS_LOCK:
        if _ENVS_PID != os.getpid():
            _forget_envs_in_child()
        key = (str(path.resolve()), subdir)
        env = _ENVS.get(key)
        if env is None:
            lmdb = _require_lmdb()
            env = lmdb.open(str(path), subdir=subdir, readonly=True, lock=False, readahead=False,
                            meminit=False, max_readers=256)
            _ENVS[key] = env
        return env


def _is_lmdb_path(p: Path) -> bool:
    return (p.is_dir() and (p / "data.mdb").is_file()) or p.suffix.lower() == ".lmdb"


class LMDBDataset(Dataset):
    """Images packed by :func:`prepare_lmdb`: item -> float32 (3, F, F) in [-1, 1].

    The environment is opened lazily (readonly, ``lock=False``) in each process that reads
    and shared by all datasets on the same path; it is closed before ``fork`` so the
    dataset can be handed to DataLoader workers (fork or spawn).
    ``full_size`` / ``pre_resize``, when given, are checked against the pack's metadata.
    """

    _UNSET = object()

    def __init__(self, path: str | os.PathLike, full_size: int | None = None, pre_resize=_UNSET):
        p = Path(path).expanduser()
        if p.is_dir() and (p / "data.mdb").is_file():
            self._subdir = True
        elif p.is_file():
            self._subdir = False
        elif not p.exists():
            raise UserError(f"LMDB dataset not found: {path}")
        else:
            raise UserError(f"not an LMDB dataset (no data.mdb): {path}")
        self.path = p
        try:
            meta_raw = self._txn_get(META_KEY)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"not an LMDB dataset: {path} ({e})") from None
        if meta_raw is None:
            raise UserError(f"LMDB at {path} has no __meta__ entry; create it with `prepare`")
        self.meta = json.loads(bytes(meta_raw).decode())
        self.count = int(self.meta["count"])
        self.full_size = int(self.meta["full_size"])
        self.pre_resize = self.meta.get("pre_resize")
        if full_size is not None and int(full_size) != self.full_size:
            raise UserError(
                f"LMDB {path} holds {self.full_size}px images but {full_size}px are needed; "
                "prepare it again with the right full size")
        if pre_resize is not LMDBDataset._UNSET and (pre_resize or None) != (self.pre_resize or None):
            warnings.warn(f"LMDB {path} was prepared with pre_resize={self.pre_resize}, "
                          f"the configuration asks for {pre_resize}; using the packed images", stacklevel=2)

    def _txn_get(self, key: bytes):
        with _shared_env(self.path, self._subdir).begin(write=False, buffers=False) as txn:
            return txn.get(key)

    def __len__(self) -> int:
        return self.count

    def load_uint8(self, index: int, size: int | None = None) -> np.ndarray:
        """Image ``index`` as (F, F, 3) uint8. The pack holds only its full size F: another
        ``size`` is a UserError (pack the images again with ``prepare --full-size S``)."""
        if size and int(size) != self.full_size:
            raise UserError(
                f"LMDB {self.path} holds {self.full_size}px images, not {int(size)}px ones: prepare the "
                f"folder again with --full-size {int(size)}, or use the image folder itself")
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} images")
        raw = self._txn_get(b"%08d" % index)
        if raw is None:
            raise UserError(f"LMDB {self.path} is missing image {index}; prepare it again")
        fmt = self.meta.get("format", "png")
        if fmt == "raw":
            return np.frombuffer(raw, dtype=np.uint8).reshape(self.full_size, self.full_size, 3)
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if index < 0:
            index += self.count
        return _uint8_to_tensor(self.load_uint8(index))
