"""Evaluate a generator as in the paper: FID, KID and SWD at N x the real images' full size.

:func:`evaluate` yields one result dict per (scale, resize mode); the protocol (which real and
fake images, how they are placed and resized) is in :mod:`infinitygan.metrics.protocol`. Each
view is rendered once and resized with every requested mode.

Reference statistics. The Inception features of the real set are cached in
``cache_dir`` (default ``$INFINITYGAN_CACHE`` or ``~/.cache/infinitygan``)/``fid-ref/KEY.npz``,
KEY a hash of: the data's identity (``procedural`` + the generator's source hash; for a folder,
its files' names, sizes and modification times; for an LMDB, its metadata and size), the
preprocessing (full size, pre-resize), the set (size, seed, excluded indices), the resize mode
(real images are used at their full size, so it does not change them, but it is part of the
key as the protocol's name) and the feature extractor (torch-fidelity's network and the weights
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
        from ..training import procedural

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
    """The real full images of an evaluation, uint8 (n, 3, F, F), loaded once."""

    def __init__(self, spec: str, dataset, num: int, seed: int, exclude: np.ndarray | None = None):
        self.spec = spec
        self.dataset = dataset
        self.indices = P.real_indices(len(dataset), num, seed, exclude)
        if len(self.indices) < 2:
            raise UserError(f"the data has too few images for an evaluation ({len(self.indices)})")
        self.seed = seed
        self._images: torch.Tensor | None = None

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = torch.cat(list(P.real_batches(self.dataset, self.indices)))
        return self._images

    def batches(self, batch: int = 32) -> Iterator[torch.Tensor]:
        x = self.images
        for i in range(0, x.shape[0], batch):
            yield x[i:i + batch]

    def features(self, net, net_id: str, resize_mode: str, cache_dir: Path | None, device) -> np.ndarray:
        """Inception features (n, 2048), from the cache when there."""
        from . import inception

        key = {"data": data_identity(self.spec, self.dataset), "full_size": int(self.images.shape[-1]),
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


def evaluate(model, data: str, metric: str, scales: list[int], resize_modes: list[str], num: int,
             seed: int = 0, device="cpu", inception_weights=None, cache_dir: Path | None = None,
             floor: bool = False, progress: bool = False, model_name: str = "") -> Iterator[dict]:
    """One result dict per (scale, resize mode) (or per resize mode with ``floor``).

    model: an ``api.Model`` (unused with ``floor``); data: ``open_dataset`` spec; metric: fid,
    kid or swd; scales: N of the N x views; num: images per set (fakes and reals).
    """
    from ..training.data import open_dataset
    from .swd import SWDAccumulator

    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    for m in resize_modes:
        if m not in P.RESIZE_MODES:
            raise UserError(f"unknown --resize {m!r} (choose from {', '.join(P.RESIZE_MODES)})")
    cfg = model.config
    full = cfg.training.full_size
    dataset = open_dataset(data, full, cfg.training.pre_resize, seed=0)
    if getattr(dataset, "full_size", getattr(dataset, "size", full)) != full:
        raise UserError(f"the data's images are not {full}x{full}")
    real = RealSet(data, dataset, num, seed)
    net = net_id = None
    if metric in ("fid", "kid"):
        from . import inception

        net, net_id = inception.load_inception(inception_weights)
        net = net.to(device)
    base = {"metric": metric, "model": model_name, "data": data, "num_real": len(real.indices),
            "full_size": full, "seed": seed}

    def swd_of(fake_batches) -> dict:
        acc = SWDAccumulator(seed=seed, device=device)
        for b in real.batches():
            acc.add_real(b)
        for b in fake_batches:
            acc.add_fake(b)
        r = acc.compute()
        return {"value": r["mean"], "levels": r["levels"], "resolutions": r["resolutions"]}

    if floor:
        other = RealSet(data, dataset, num, seed + 1, exclude=real.indices)
        swd_res = None
        for mode in resize_modes:
            t0 = time.perf_counter()
            if metric == "swd":  # real images are not resized: one value for every mode
                swd_res = res = swd_res or swd_of(other.batches())
            else:
                res = _feature_metric(metric, real.features(net, net_id, mode, cache_dir, device),
                                      other.features(net, net_id, mode, cache_dir, device), seed)
            yield {**base, "model": "real (floor)", "scale": 1, "resize": mode, **res,
                   "num_fake": len(other.indices), "seconds": round(time.perf_counter() - t0, 3)}
        return

    real_f = {m: real.features(net, net_id, m, cache_dir, device) for m in resize_modes} if net else {}
    from tqdm import tqdm

    for scale in scales:
        t0 = time.perf_counter()
        views = P.placements(cfg, num, scale, seed)
        bar = tqdm(total=len(views), desc=f"{metric} {scale}x", unit="img", disable=not progress, leave=False)
        accs = {m: SWDAccumulator(seed=seed, device=device) for m in resize_modes} if metric == "swd" else {}
        feats: dict[str, list[np.ndarray]] = {m: [] for m in resize_modes}
        if accs:
            for m, acc in accs.items():
                for b in real.batches():
                    acc.add_real(b)
        for batch in P.fake_batches(model, views, device, tuple(resize_modes), progress=bar):
            for m, x in batch.items():
                if accs:
                    accs[m].add_fake(x)
                else:
                    feats[m].append(inception_features(net, x, device))
        bar.close()
        for m in resize_modes:
            if accs:
                r = accs[m].compute()
                res = {"value": r["mean"], "levels": r["levels"], "resolutions": r["resolutions"]}
            else:
                res = _feature_metric(metric, real_f[m], np.concatenate(feats[m]), seed)
            yield {**base, "scale": scale, "resize": m, **res, "num_fake": len(views),
                   "generated_size": scale * full, "seconds": round(time.perf_counter() - t0, 3)}


def inception_features(net, x: torch.Tensor, device) -> np.ndarray:
    from . import inception

    return inception.features(net, x, device).numpy()
