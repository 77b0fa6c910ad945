"""Evaluate a generator as in the paper: FID, KID and SWD at its training resolution and at
N x the real images' field of view.

:func:`evaluate` yields one result dict per (column, resize mode), a column being a scale N
(N F-pixel views downsampled to the reference size R, against real images at R) or ``patch``
(P-pixel views against P-pixel crops of the real full images); the protocol (sizes, which real
and fake images, how they are placed and resized) is in :mod:`infinitygan.metrics.protocol`.
Each view is rendered once and resized with every requested mode.

Reference statistics. The Inception features of the real set are cached in
``cache_dir`` (default ``$INFINITYGAN_CACHE`` or ``~/.cache/infinitygan``)/``fid-ref/KEY.npz``,
KEY a hash of: the data's identity (``procedural`` + the generator's source hash; for a folder,
its files' names, sizes and modification times; for an LMDB, its metadata and size), the
preprocessing (full size, pre-resize), the set (size, seed, excluded indices, the compared size,
and for the patch column the crop size and seed), the resize mode (real images are never
resized by the metric, so it does not change them, but it is part of the key as the protocol's
name) and the feature extractor (torch-fidelity's network and the weights
file's sha256). Repeated evaluations then pay only for the fakes. SWD needs no network; its real
descriptors are cheap and recomputed.

Floors (``floor=True``): the same metric between the real set and a second, disjoint real set of
the same size: the value an ideal generator would score with this many images.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import UserError
from . import protocol as P

METRICS = ("fid", "kid", "swd")


def default_cache_dir() -> Path:
    return Path(os.environ.get("INFINITYGAN_CACHE", "~/.cache/infinitygan")).expanduser()


def data_identity(spec: str, dataset) -> dict:
    """What identifies the images of ``open_dataset(spec, ...)`` (see the module docstring)."""
    if spec == "procedural":
        from ..data import procedural

        src = Path(procedural.__file__).read_bytes()
        return {"kind": "procedural", "seed": getattr(dataset, "seed", 0), "length": len(dataset),
                "source_sha256": hashlib.sha256(src).hexdigest()[:16]}
    p = Path(spec).expanduser().resolve()
    files = getattr(dataset, "files", None)
    if files is not None:
        h = hashlib.sha256()
        for f in files:
            st = Path(f).stat()
            h.update(f"{Path(f).relative_to(p) if str(f).startswith(str(p)) else f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return {"kind": "folder", "path": str(p), "files": len(files), "listing_sha256": h.hexdigest()[:16]}
    meta = getattr(dataset, "meta", {})
    size = sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
    return {"kind": "lmdb", "path": str(p), "meta": meta, "bytes": size}


def _cache_key(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class RealSet:
    """The real images of an evaluation, uint8 (n, 3, S, S), loaded once: whole images at
    ``size`` (the reference size R; None: the data's full size), or with ``patch`` one P x P
    crop of each full image (the training-resolution column)."""

    def __init__(self, spec: str, dataset, num: int, seed: int, exclude: np.ndarray | None = None,
                 size: int | None = None, patch: int | None = None, full: int | None = None):
        self.spec = spec
        self.dataset = dataset
        self.indices = P.real_indices(len(dataset), num, seed, exclude)
        if len(self.indices) < 2:
            raise UserError(f"the data has too few images for an evaluation ({len(self.indices)})")
        self.seed = seed
        self.size = int(size) if size else None
        self.patch = int(patch) if patch else None
        self.full = int(full) if full else None  # the size the patch column crops from
        self._images: torch.Tensor | None = None

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            if self.patch:
                it = P.real_patch_batches(self.dataset, self.indices, self.patch, self.seed, full=self.full)
            else:
                it = P.real_batches(self.dataset, self.indices, size=self.size)
            self._images = torch.cat(list(it))
        return self._images

    def batches(self, batch: int = 32) -> Iterator[torch.Tensor]:
        x = self.images
        for i in range(0, x.shape[0], batch):
            yield x[i:i + batch]

    def features(self, net, net_id: str, resize_mode: str, cache_dir: Path | None, device) -> np.ndarray:
        """Inception features (n, 2048), from the cache when there."""
        from . import inception

        key = {"data": data_identity(self.spec, self.dataset),
               "full_size": getattr(self.dataset, "full_size", getattr(self.dataset, "size", None)),
               "compared_size": int(self.images.shape[-1]), "patch_crop": [self.patch, self.seed] if self.patch else None,
               "pre_resize": getattr(self.dataset, "pre_resize", None), "num": len(self.indices),
               "indices_sha256": hashlib.sha256(np.asarray(self.indices, np.int64).tobytes()).hexdigest()[:16],
               "resize": resize_mode, "extractor": f"torch-fidelity inception-v3-compat pool3 {net_id}"}
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / "fid-ref" / f"{_cache_key(key)}.npz"
            if path.is_file():
                with np.load(path) as z:
                    return z["features"].astype(np.float64)
        feats = np.concatenate([inception.features(net, b, device).numpy() for b in self.batches()])
        if path is not None:
            _save_npz(path, features=feats.astype(np.float32), key=np.array(json.dumps(key, default=str)))
            feats = feats.astype(np.float32).astype(np.float64)  # the same values as a cache hit
        return feats


def _feature_metric(metric: str, real_f: np.ndarray, fake_f: np.ndarray, seed: int) -> dict:
    from .fid import frechet_distance, gaussian_stats, kid

    if metric == "fid":
        return {"value": frechet_distance(*gaussian_stats(real_f), *gaussian_stats(fake_f))}
    mean, std, m = kid(real_f, fake_f, seed=seed)
    return {"value": mean, "std": std, "subset_size": m}


def _open_data(data: str, cfg, proto: "P.EvalProtocol"):
    """The evaluation's dataset, opened like training's (full size F, the config's pre-resize).
    An LMDB holds one size only: a pack at F serves the patch column (and the N x columns when
    R = F), a pack at R the N x columns; the reals of a column it cannot serve are refused in one
    line when loaded (``load_uint8``)."""
    from ..data.datasets import open_dataset
    from ..data.lmdb_pack import LMDBDataset, _is_lmdb_path

    full, ref = proto.full_size, proto.reference_size
    if data != "procedural" and _is_lmdb_path(Path(data).expanduser()):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pack's own pre-resize is what it holds
            ds = LMDBDataset(Path(data).expanduser())
        if ds.full_size not in (full, ref):
            raise UserError(f"LMDB {data} holds {ds.full_size}px images: the evaluation needs {ref}px ones "
                            f"(the reference size) or {full}px ones (the full size, for --scale patch)")
        return ds
    dataset = open_dataset(data, full, cfg.training.pre_resize, seed=0)
    if getattr(dataset, "full_size", getattr(dataset, "size", full)) != full:
        raise UserError(f"the data's images are not {full}x{full}")
    return dataset


def _columns(scales) -> list:
    """Scales as given (ints, or ``"patch"``), validated, in order, without repeats."""
    out = []
    for c in scales:
        c = P.PATCH if c == P.PATCH else int(c)
        if c != P.PATCH and c < 1:
            raise UserError(f"scales must be positive integers or {P.PATCH!r}, got {c}")
        if c not in out:
            out.append(c)
    if not out:
        raise UserError("no scale to evaluate")
    return out


def evaluate(model, data: str, metric: str, scales: list, resize_modes: list[str], num: int,
             seed: int = 0, device="cpu", inception_weights=None, cache_dir: Path | None = None,
             floor: bool = False, progress: bool = False, model_name: str = "",
             reference_size: int | None = None) -> Iterator[dict]:
    """One result dict per (column, resize mode).

    model: an ``api.Model`` (with ``floor``, only its configuration is used); data:
    ``open_dataset`` spec; metric: fid, kid or swd; scales: the columns, N of the N x views
    and/or ``"patch"`` (the training resolution); num: images per set (fakes and reals);
    reference_size: R (None: ``protocol.default_reference_size``, the pre-resize or the full size).
    With ``floor``: the metric between two disjoint real sets, one row per resize mode at the
    reference size (scale 1; when any N is asked) and at the patch size (``patch``).
    """
    from .swd import SWDAccumulator

    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    for m in resize_modes:
        if m not in P.RESIZE_MODES:
            raise UserError(f"unknown --resize {m!r} (choose from {', '.join(P.RESIZE_MODES)})")
    columns = _columns(scales)
    cfg = model.config
    proto = P.EvalProtocol.of(cfg, reference_size)
    full = proto.full_size
    if not P.MIN_SIZE <= proto.reference_size <= full:
        raise UserError(f"the reference size must be between {P.MIN_SIZE} and the full size {full}, "
                        f"got {proto.reference_size}")
    if P.PATCH in columns and proto.patch_size > full:
        raise UserError(f"the training patch ({proto.patch_size}px) is larger than the full size {full}")
    dataset = _open_data(data, cfg, proto)
    sets: dict = {}

    def real_of(col) -> RealSet:
        kind = P.PATCH if col == P.PATCH else "ref"
        if kind not in sets:
            sets[kind] = (RealSet(data, dataset, num, seed, patch=proto.patch_size, full=full) if kind == P.PATCH
                          else RealSet(data, dataset, num, seed, size=proto.reference_size))
        return sets[kind]

    for col in columns:  # bad data (an LMDB without the reference size, ...): before any work
        real_of(col).images
    net = net_id = None
    if metric in ("fid", "kid"):
        from . import inception

        net, net_id = inception.load_inception(inception_weights)
        net = net.to(device)
    base = {"metric": metric, "model": model_name, "data": data, "full_size": full,
            "reference_size": proto.reference_size, "seed": seed}

    def swd_of(real: RealSet, fake_batches) -> dict:
        acc = SWDAccumulator(seed=seed, device=device)
        for b in real.batches():
            acc.add_real(b)
        for b in fake_batches:
            acc.add_fake(b)
        r = acc.compute()
        return {"value": r["mean"], "levels": r["levels"], "resolutions": r["resolutions"]}

    if floor:
        kinds = ([1] if any(c != P.PATCH for c in columns) else []) + ([P.PATCH] if P.PATCH in columns else [])
        for col in kinds:
            real = real_of(col)
            other = RealSet(data, dataset, num, seed + 1, exclude=real.indices, size=real.size, patch=real.patch,
                            full=full)
            swd_res = None
            for mode in resize_modes:
                t0 = time.perf_counter()
                if metric == "swd":  # real images are not resized: one value for every mode
                    swd_res = res = swd_res or swd_of(real, other.batches())
                else:
                    res = _feature_metric(metric, real.features(net, net_id, mode, cache_dir, device),
                                          other.features(net, net_id, mode, cache_dir, device), seed)
                yield {**base, "model": "real (floor)", "scale": col, "resize": mode, **res,
                       "num_real": len(real.indices), "num_fake": len(other.indices),
                       "compared_size": proto.compared_size(col), "seconds": round(time.perf_counter() - t0, 3)}
        return

    from tqdm import tqdm

    for col in columns:
        t0 = time.perf_counter()
        real = real_of(col)
        gen_size, size = proto.generated_size(col), proto.compared_size(col)
        views = P.placements(cfg, num, 1 if col == P.PATCH else col, seed, size=gen_size)
        # no resize (the patch column, or 1x with R = F): every mode gives the same images
        modes = list(resize_modes) if gen_size != size else list(resize_modes[:1])
        bar = tqdm(total=len(views), desc=f"{metric} {col}{'' if col == P.PATCH else 'x'}", unit="img",
                   disable=not progress, leave=False)
        accs = {m: SWDAccumulator(seed=seed, device=device) for m in modes} if metric == "swd" else {}
        feats: dict[str, list[np.ndarray]] = {m: [] for m in modes}
        for acc in accs.values():
            for b in real.batches():
                acc.add_real(b)
        for batch in P.fake_batches(model, views, device, tuple(modes), progress=bar, size=size):
            for m, x in batch.items():
                if accs:
                    accs[m].add_fake(x)
                else:
                    feats[m].append(inception_features(net, x, device))
        bar.close()
        results = {}
        for m in modes:
            if accs:
                r = accs[m].compute()
                results[m] = {"value": r["mean"], "levels": r["levels"], "resolutions": r["resolutions"]}
            else:
                results[m] = _feature_metric(metric, real.features(net, net_id, m, cache_dir, device),
                                             np.concatenate(feats[m]), seed)
        for m in resize_modes:
            yield {**base, "scale": col, "resize": m, **results.get(m, results[modes[0]]),
                   "num_real": len(real.indices), "num_fake": len(views), "generated_size": gen_size,
                   "compared_size": size, "seconds": round(time.perf_counter() - t0, 3)}


def inception_features(net, x: torch.Tensor, device) -> np.ndarray:
    from . import inception

    return inception.features(net, x, device).numpy()
