"""Training data: image folders, LMDB packs, the procedural source, patch sampling, loaders.

Protocol (paper): every image is converted to RGB, center-square cropped, optionally
Lanczos pre-resized to ``pre_resize`` (128 in the paper's main protocol), then Lanczos
resized to ``full_size`` (197).  Training samples random ``patch`` x ``patch`` crops
(101 of 197) with a random horizontal flip; the discriminator's auxiliary target is the
crop's vertical position ``row / (F - patch) * 2 - 1`` in [-1, 1].

Shapes / dtypes:
    preprocess(img, F, pre)            -> float32 (3, F, F) in [-1, 1]
    ImageFolderDataset / LMDBDataset   -> item: float32 (3, F, F) in [-1, 1]
    ProceduralLandscapes               -> item: float32 (3, F, F) in [-1, 1] (rendered at F,
                                          then pre-resized and resized to F like a folder's)
    dataset.load_uint8(i, size=None)   -> uint8 (S, S, 3): the same chain ending at S (default F);
                                          S = pre_resize gives the pre-resized image itself
                                          (the evaluation's reference images)
    random_patch(img (3, F, F), p, g)  -> (float32 (3, p, p), float label in [-1, 1])
    PatchDataset[(q, i)]               -> (float32 (3, p, p), float32 0-d label)
    endless_batches(PatchDataset, B)   -> batches (float32 (b, 3, p, p), float32 (b,)), b = B / W
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from .procedural import ProceduralLandscapes
from .seeds import seeded_generator

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
    "ResumableSampler",
    "endless_batches",
]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
#: images whose shorter side is smaller than this are not used (upsampling them gives blur)
MIN_IMAGE_SIDE = 32
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


# --------------------------------------------------------------------- dataset spec
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


# ------------------------------------------------------------------ patch sampling
def random_patch(img: torch.Tensor, patch: int, generator: torch.Generator, flip: bool = True
                 ) -> tuple[torch.Tensor, float]:
    """Random (flipped) ``patch`` x ``patch`` crop of ``img`` (3, H, W) + its vertical label.

    Random draws, in order: flip (p=0.5, only if ``flip``), row offset, column offset.
    Label = ``row / (H - patch) * 2 - 1`` in [-1, 1] (0 when H == patch); the flip does
    not change it.  For H = 197, patch = 101: ``row / 96 * 2 - 1``.
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


class PatchDataset(Dataset):
    """Wraps a full-image dataset; item ``(q, i)`` -> (patch (3, p, p) float32, label 0-d float32).

    The crop of image ``i`` in pass ``q`` over the data comes from a generator seeded by
    ``(seed, q, i)``: it does not depend on worker count, order or resumption.
    """

    def __init__(self, dataset: Dataset, patch: int = 101, seed: int = 0, flip: bool = True):
        self.dataset = dataset
        self.patch = int(patch)
        self.seed = int(seed)
        self.flip = bool(flip)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        pass_index, index = int(key[0]), int(key[1])
        g = seeded_generator(self.seed, pass_index, index)
        patch, label = random_patch(self.dataset[index], self.patch, g, flip=self.flip)
        return patch, torch.tensor(label, dtype=torch.float32)

    def __getitems__(self, keys: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The items of one batch (the DataLoader's batched fetch). In the training process
        itself (``--workers 0``, the CPU default) they load on one thread per intra-op thread:
        decoding, resizing and the procedural renderer release the GIL, so the loading uses every
        core instead of one while the others wait. In a loader worker: one by one. Every item is
        a function of its key alone, so the batch is the same either way."""
        n = min(len(keys), _loading_threads())
        if n <= 1:
            return [self[k] for k in keys]
        return list(_thread_pool(n).map(self.__getitem__, keys))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _loading_threads() -> int:
    from torch.utils.data import get_worker_info

    return 1 if get_worker_info() is not None else torch.get_num_threads()


def _thread_pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` loading threads of this process (a forked child makes its own)."""
    key = (os.getpid(), n)
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="infinitygan-load")
    return pool


# -------------------------------------------------------------------------- loaders
def _pass_permutation(seed: int, n: int, pass_index: int) -> list[int]:
    return torch.randperm(n, generator=seeded_generator(seed, pass_index, 0x5A4D)).tolist()


class ResumableSampler(Sampler):
    """This process's share of an endless stream of shuffled passes over ``n`` items, from any
    iteration on.

    The stream: pass q = 0, 1, ... is a permutation of the n items seeded by (seed, q); the passes
    are concatenated and cut into global batches of B items (batch t = stream positions
    [t B, (t + 1) B)). Process r of W takes positions t B + r, t B + r + W, ... (b = B / W of them,
    the interleaving of ``distributed.rank_slice``). Keys are ``(q, index)`` (``PatchDataset``
    draws the crop from (seed, q, index)). Starting at iteration t is arithmetic (position t B):
    nothing is replayed. A dataset smaller than a batch repeats inside the batch (few-shot).
    """

    def __init__(self, n: int, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_iteration: int = 0):
        if n < 1 or global_batch < 1 or global_batch % world_size or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler: n={n}, batch={global_batch}, rank={rank}, world={world_size}")
        self.n, self.batch, self.seed = int(n), int(global_batch), int(seed)
        self.rank, self.world = int(rank), int(world_size)
        self.start = int(start_iteration)

    def passes_done(self, iteration: int) -> int:
        """Whole passes over the data consumed by ``iteration`` iterations."""
        return iteration * self.batch // self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        q, off = divmod(self.start * self.batch, self.n)
        perm = _pass_permutation(self.seed, self.n, q)
        while True:
            for j in range(self.batch):
                if j % self.world == self.rank:
                    yield q, perm[off]
                off += 1
                if off == self.n:
                    q, off = q + 1, 0
                    perm = _pass_permutation(self.seed, self.n, q)


def _ignore_sigint(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the training process (which checkpoints, then stops them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def endless_batches(patches: "PatchDataset", global_batch: int, workers: int, rank: int = 0, world_size: int = 1,
                    seed: int = 0, start_iteration: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (patches (b, 3, p, p), labels (b,)) of iterations start_iteration, +1, ... for process
    ``rank`` (b = global_batch / world_size), loaded by ``workers`` processes (0: in-process)."""
    sampler = ResumableSampler(len(patches), global_batch, seed, rank, world_size, start_iteration)
    loader = DataLoader(patches, batch_size=global_batch // world_size, sampler=sampler, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), worker_init_fn=_ignore_sigint if workers else None)
    return iter(loader)
