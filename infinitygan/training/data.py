"""Training data: image folders, LMDB packs, the procedural source, patch sampling, loaders.

Protocol (paper): every image is converted to RGB, center-square cropped, optionally
Lanczos pre-resized to ``pre_resize`` (128 in the paper's main protocol), then Lanczos
resized to ``full_size`` (197).  Training samples random ``patch`` x ``patch`` crops
(101 of 197) with a random horizontal flip; the discriminator's auxiliary target is the
crop's vertical position ``row / (F - patch) * 2 - 1`` in [-1, 1].

Shapes / dtypes:
    preprocess(img, F, pre)            -> float32 (3, F, F) in [-1, 1]
    ImageFolderDataset / LMDBDataset   -> item: float32 (3, F, F) in [-1, 1]
    ProceduralLandscapes               -> item: float32 (3, F, F) in [-1, 1]
    random_patch(img (3, F, F), p, g)  -> (float32 (3, p, p), float label in [-1, 1])
    PatchDataset                       -> item: (float32 (3, p, p), float32 0-d label)
    make_loader(PatchDataset, B, ...)  -> batches (float32 (B, 3, p, p), float32 (B,))
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from infinitygan.errors import UserError
from infinitygan.training.procedural import ProceduralLandscapes

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "preprocess",
    "preprocess_uint8",
    "ImageFolderDataset",
    "prepare_lmdb",
    "LMDBDataset",
    "open_dataset",
    "random_patch",
    "PatchDataset",
    "EpochSampler",
    "make_loader",
    "infinite_batches",
]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
META_KEY = b"__meta__"


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


def _is_readable(path: Path) -> bool:
    """Cheap header/structure check (``Image.verify``); full decoding happens later."""
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


def _scan(folder: str | os.PathLike) -> tuple[list[Path], int]:
    files = list_images(folder)
    good = [p for p in files if _is_readable(p)]
    return good, len(files) - len(good)


def _no_readable(folder, n: int) -> UserError:
    return UserError(f"no readable images in {folder} ({n} image files could not be decoded)")


# ---------------------------------------------------------------------- folder data
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

    def load_uint8(self, index: int) -> np.ndarray:
        """Preprocessed image ``index`` as (F, F, 3) uint8 (raises if it cannot be decoded)."""
        return _load_uint8(self.files[index], self.full_size, self.pre_resize)

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


# ----------------------------------------------------------------------------- LMDB
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
        raise UserError(f"output already exists: {out_path} (remove it or pass overwrite)")
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


def _shared_env(path: Path, subdir: bool):
    global _ENVS_PID
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

    def load_uint8(self, index: int) -> np.ndarray:
        """Image ``index`` as (F, F, 3) uint8."""
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


# --------------------------------------------------------------------- dataset spec
def open_dataset(spec: str, full_size: int = 197, pre_resize: int | None = None, seed: int = 0) -> Dataset:
    """``"procedural"`` | an LMDB (dir with data.mdb, or ``*.lmdb``) | an image folder."""
    if spec == "procedural":
        return ProceduralLandscapes(size=full_size, seed=seed)
    p = Path(spec).expanduser()
    if _is_lmdb_path(p):
        return LMDBDataset(p, full_size=full_size, pre_resize=pre_resize)
    if p.is_dir():
        return ImageFolderDataset(p, full_size=full_size, pre_resize=pre_resize)
    if p.exists():
        raise UserError(f"data must be a folder of images, an LMDB, or 'procedural': {spec}")
    raise UserError(f"data folder not found: {spec}")


# ------------------------------------------------------------------ patch sampling
def random_patch(img: torch.Tensor, patch: int, generator: torch.Generator, flip: bool = True
                 ) -> tuple[torch.Tensor, float]:
    """Random (flipped) ``patch`` x ``patch`` crop of ``img`` (3, H, W) + its vertical label.

    Random draws, in order: flip (p=0.5, only if ``flip``), row offset, column offset.
    Label = ``row / (H - patch) * 2 - 1`` in [-1, 1] (0 when H == patch); the flip does
    not change it.  For H = 197, patch = 101: ``row / 95 * 2 - 1``.
    """
    h, w = img.shape[-2:]
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} larger than image {h}x{w}")
    do_flip = flip and bool(torch.rand((), generator=generator) < 0.5)
    row = int(torch.randint(0, h - patch + 1, (), generator=generator))
    col = int(torch.randint(0, w - patch + 1, (), generator=generator))
    if do_flip:
        col_src = w - patch - col  # crop of the flipped image == flipped crop at mirrored column
        out = img[..., row:row + patch, col_src:col_src + patch].flip(-1)
    else:
        out = img[..., row:row + patch, col:col + patch]
    label = row / (h - patch) * 2.0 - 1.0 if h > patch else 0.0
    return out.contiguous(), float(label)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    ss = np.random.SeedSequence([int(seed) & ((1 << 63) - 1), int(epoch), int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class PatchDataset(Dataset):
    """Wraps a full-image dataset; item ``i`` -> (patch (3, p, p) float32, label 0-d float32).

    Randomness comes from a generator seeded by ``(seed, epoch, index)``, so results do not
    depend on worker count or order.  Items may be requested as ``i`` (uses the epoch set
    by :meth:`set_epoch`) or as ``(epoch, i)`` (what :class:`EpochSampler` yields; this keeps
    the epoch right inside persistent DataLoader workers).
    """

    def __init__(self, dataset: Dataset, patch: int = 101, seed: int = 0, flip: bool = True):
        self.dataset = dataset
        self.patch = int(patch)
        self.seed = int(seed)
        self.flip = bool(flip)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(key, tuple):
            epoch, index = int(key[0]), int(key[1])
        else:
            epoch, index = self.epoch, int(key)
        g = torch.Generator()
        g.manual_seed(_item_seed(self.seed, epoch, index))
        patch, label = random_patch(self.dataset[index], self.patch, g, flip=self.flip)
        return patch, torch.tensor(label, dtype=torch.float32)


# -------------------------------------------------------------------------- loaders
class EpochSampler(Sampler):
    """Wraps a sampler with ``set_epoch``; yields ``(epoch, index)`` when ``tag`` else ``index``."""

    def __init__(self, sampler, tag: bool = False):
        self.sampler = sampler
        self.tag = tag
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def __iter__(self):
        e = self.epoch
        for i in self.sampler:
            yield (e, i) if self.tag else i

    def __len__(self) -> int:
        return len(self.sampler)


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, rank: int = 0, world_size: int = 1,
                seed: int = 0, drop_last: bool = True) -> DataLoader:
    """Shuffled DataLoader over ``dataset``.

    Always uses a seeded :class:`DistributedSampler` (``num_replicas=world_size``,
    ``rank``), so single-process runs are shuffled reproducibly too; the sampler is wrapped
    in :class:`EpochSampler` (``loader.sampler.set_epoch`` works; epochs are passed to a
    :class:`PatchDataset` with every index).  Workers are persistent when ``num_workers>0``.
    """
    if world_size > 1 and not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler = EpochSampler(inner, tag=isinstance(dataset, PatchDataset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def infinite_batches(loader: DataLoader, start_epoch: int = 0) -> Iterator:
    """Yield batches forever, calling ``set_epoch(e)`` on the sampler (and dataset) each pass."""
    epoch = int(start_epoch)
    while True:
        for obj in (loader.sampler, getattr(loader.batch_sampler, "sampler", None), loader.dataset):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise UserError(
                f"dataset too small: {len(loader.dataset)} images give no full batch of {loader.batch_size} per process")
        epoch += 1
