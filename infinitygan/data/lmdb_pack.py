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

from ..errors import UserError, shown
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

    from ..io.resources import check_memory

    out = check_prepare_output(folder, out_path, overwrite)
    full_size = int(full_size)
    pre_resize = int(pre_resize) if pre_resize else None
    # per image: the output pixels, Pillow's resize intermediate and the PNG encoder's copy
    check_memory(3 * full_size * full_size * 3, f"--full-size {full_size}", "a smaller --full-size")
    files, skipped = _scan(folder)
    if not files:
        raise _no_readable(folder, skipped)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    # Upper bound: raw pixels + slack; the map is sparse on Linux/macOS.
    map_size = max(len(files) * (full_size * full_size * 3 + 4096) * 2, 64 << 20)
    env = None
    count = 0
    try:
        env = lmdb.open(str(tmp), map_size=map_size, subdir=True, readahead=False, meminit=False, lock=True)
        txn = env.begin(write=True)
        for path in tqdm(files, desc="prepare", unit="img", disable=not progress):
            try:
                arr = _load_uint8(path, full_size, pre_resize)
            except MemoryError:
                raise UserError(f"out of memory preparing {path} at --full-size {full_size} (a smaller --full-size, "
                                "or fewer other programs running); nothing was written") from None
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
    except lmdb.Error as e:  # a full disk, a map the system refuses
        _discard(env, tmp)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"could not write {out_path}: {why} (is the disk full?); nothing was written") from None
    except BaseException:
        _discard(env, tmp)
        raise
    env.close()
    if count == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _no_readable(folder, skipped)
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable images in {folder}", stacklevel=2)
    if out.exists():  # overwrite=True, and check_prepare_output found an LMDB of ours there
        shutil.rmtree(out)
    os.replace(tmp, out)
    return count


def _discard(env, tmp: Path) -> None:
    if env is not None:
        env.close()
    shutil.rmtree(tmp, ignore_errors=True)


def written_by_prepare(path: Path) -> bool:
    """True when ``path`` is an LMDB folder that ``prepare`` wrote: nothing in it but LMDB's two
    files, and a ``__meta__`` record of ours (what ``--overwrite`` may replace)."""
    lmdb = _require_lmdb()
    if not path.is_dir() or path.is_symlink():
        return False
    names = {p.name for p in path.iterdir()}
    if "data.mdb" not in names or not names <= {"data.mdb", "lock.mdb"}:
        return False
    try:
        env = lmdb.open(str(path), subdir=True, readonly=True, lock=False, max_readers=1)
    except lmdb.Error:
        return False
    try:
        with env.begin() as txn:
            raw = txn.get(META_KEY)
        meta = json.loads(bytes(raw).decode()) if raw is not None else None
    except (lmdb.Error, ValueError, RecursionError):
        return False
    finally:
        env.close()
    return isinstance(meta, dict) and meta.get("format") in ("png", "raw") and "count" in meta


def check_prepare_output(folder, out_path, overwrite: bool) -> Path:
    """The LMDB folder ``prepare`` may write (absolute); UserError for an --out that is or holds
    the image folder, a root, or (with --overwrite) anything but an LMDB ``prepare`` wrote: the
    command replaces only its own output."""
    out = Path(os.path.abspath(Path(out_path).expanduser()))
    src = Path(os.path.abspath(Path(folder).expanduser()))
    real_out, real_src = out.resolve(), src.resolve()
    if real_out == real_src or real_out in real_src.parents:
        raise UserError(f"--out {out_path} is (or holds) the image folder {folder}: choose an --out outside it "
                        "(nothing was written)")
    if out.parent == out:
        raise UserError(f"--out {out_path} is the root of a file system: name a new folder, e.g. data.lmdb")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise UserError(f"output already exists: {out_path} (remove it, or use --overwrite)")
        if not written_by_prepare(out):
            raise UserError(f"--overwrite replaces only an LMDB written by `prepare`, and {out_path} is not one "
                            "(it holds other files): remove it yourself or choose another --out")
    return out


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
        self.meta = self._checked_meta(meta_raw, path)
        self.count = self.meta["count"]
        self.full_size = self.meta["full_size"]
        self.pre_resize = self.meta.get("pre_resize")
        self.load_uint8(0)  # a pack of junk records is refused here, before a run is set up around it
        if full_size is not None and int(full_size) != self.full_size:
            raise UserError(
                f"LMDB {path} holds {self.full_size}px images but {full_size}px are needed; "
                "prepare it again with the right full size")
        if pre_resize is not LMDBDataset._UNSET and (pre_resize or None) != (self.pre_resize or None):
            warnings.warn(f"LMDB {path} was prepared with pre_resize={self.pre_resize}, "
                          f"the configuration asks for {pre_resize}; using the packed images", stacklevel=2)

    def _checked_meta(self, raw, path) -> dict:
        """The pack's ``__meta__`` JSON, checked against the records the pack holds (a count of
        10^12 would size the sampler's permutation at 8 TB)."""
        try:
            meta = json.loads(bytes(raw).decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UserError(f"LMDB {path}: its __meta__ entry is not JSON (a damaged pack: prepare it again)") from None
        if not isinstance(meta, dict):
            raise UserError(f"LMDB {path}: its __meta__ entry is a {type(meta).__name__}, not a mapping "
                            "(prepare it again)")
        records = _shared_env(self.path, self._subdir).stat()["entries"] - 1  # the images, without __meta__
        count, full, pre = meta.get("count"), meta.get("full_size"), meta.get("pre_resize")

        def integer(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not integer(count) or not 1 <= count <= records:
            raise UserError(f"LMDB {path}: __meta__ says {shown(count)} images but the pack holds {records:,} "
                            "records (prepare it again)")
        if not integer(full) or not 1 <= full <= 8192 or not (pre is None or integer(pre) and 1 <= pre <= 8192):
            raise UserError(f"LMDB {path}: __meta__ full_size / pre_resize must be integers in 1..8192, got "
                            f"{shown(full)} / {shown(pre)} (prepare it again)")
        if meta.get("format", "png") not in ("png", "raw"):
            raise UserError(f"LMDB {path}: unknown image format {shown(meta.get('format'))} in __meta__ (png, raw)")
        return meta

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
        F = self.full_size
        damaged = UserError(f"LMDB {self.path}: image {index} is not a readable {F}x{F} image (a damaged pack: "
                            "prepare it again)")
        if self.meta.get("format", "png") == "raw":
            if len(raw) != F * F * 3:
                raise damaged
            return np.frombuffer(raw, dtype=np.uint8).reshape(F, F, 3)
        try:
            with Image.open(io.BytesIO(raw)) as im:
                if im.size != (F, F):
                    raise damaged
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except UserError:
            raise
        except Exception:  # Pillow names the BytesIO object: say which record instead
            raise damaged from None

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if index < 0:
            index += self.count
        return _uint8_to_tensor(self.load_uint8(index))
