"""Metric subcommand of the ``infinitygan`` CLI: ``eval``.

``infinitygan.cli`` calls :func:`register` at import. Bad input raises ``UserError`` (one line,
exit code 2).
"""
from __future__ import annotations

import json
import time

import click

from ..errors import UserError


def register(cli: click.Group) -> None:
    cli.add_command(eval_cmd)


# ===================================================================================== eval
def _resize(x, size: int):
    """(N, 3, H, W) -> (N, 3, size, size), antialiased bilinear (identity when already that size)."""
    import torch

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


def fake_images(model, num: int, fov: int, seed: int, device, batch: int = 16):
    """Batches (n, 3, P, P) of generated images: (fov P)^2 renders centred on the horizon at a
    random horizontal offset, of random canvas seeds, resized to P when fov > 1."""
    import numpy as np
    import torch

    from ..synthesis import horizon_centered_y

    P = model.config.generator.patch_size
    size = fov * P
    synth = model.synthesizer(device)
    rng = np.random.default_rng([int(seed), 0xE7A1])
    buf = []
    for _ in range(num):
        canvas_seed = int(rng.integers(0, 2 ** 62))
        x = int(rng.integers(-(2 ** 30), 2 ** 30))
        region = model.region(size, size, x=x, y=horizon_centered_y(size))
        img = synth.render(model.canvas(canvas_seed), region)
        buf.append(torch.from_numpy(img).permute(2, 0, 1))
        if len(buf) == batch:
            yield _resize(torch.stack(buf), P)
            buf = []
    if buf:
        yield _resize(torch.stack(buf), P)


def real_images(dataset, num: int, fov: int, patch: int, seed: int, batch: int = 16):
    """Batches (n, 3, P, P) of real images: random P crops of the full images for fov 1; the
    whole full images resized to P for fov > 1 (at most one per dataset image)."""
    import numpy as np
    import torch

    from ..training.data import PatchDataset

    n_data = len(dataset)
    rng = np.random.default_rng([int(seed), 0x4EA1])
    if fov == 1:
        patches = PatchDataset(dataset, patch=patch, seed=seed)
        reps = -(-num // n_data)
        order = np.concatenate([rng.permutation(n_data) for _ in range(min(reps, 64))])[:num] if n_data < num \
            else rng.choice(n_data, size=num, replace=False)
        keys = [(i // n_data, int(j)) for i, j in enumerate(order)]
        get = lambda k: patches[k][0]  # noqa: E731
    else:
        order = rng.permutation(n_data)[:num] if n_data <= 10 * num else rng.choice(n_data, size=num, replace=False)
        keys = [int(j) for j in order]
        get = lambda k: dataset[k]  # noqa: E731
    for i in range(0, len(keys), batch):
        yield _resize(torch.stack([get(k) for k in keys[i:i + batch]]), patch)


@click.command("eval")
@click.option("--metric", default="swd", show_default=True, type=click.Choice(["swd"]))
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file or run directory (default: bundled)")
@click.option("--data", default="procedural", show_default=True, help="'procedural', an image folder or an LMDB")
@click.option("--num", default=1000, show_default=True, type=int, help="images per set")
@click.option("--fov", default=1, show_default=True, type=int, help="field of view of the generated images, in training patches (1, 4, ...)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
def eval_cmd(metric, model_path, data, num, fov, seed, device):
    """Print one JSON object with a distance between generated and real images.

    SWD (Laplacian-pyramid sliced Wasserstein distance, x1e3) always at the training patch
    size P (101 for paper-101): with --fov 1, generated P x P patches against random P x P crops
    of the real full images (the training distribution); with --fov k > 1, generated (kP)^2
    images downsampled to P against the WHOLE real full images (197 for paper-101, ~2 P of field
    of view, the widest real view there is) downsampled to P, in the spirit of the paper's
    ScaleInv FID. Both sides are resized with antialiased bilinear interpolation; generated
    images use random canvas seeds, are centred on the horizon and shifted by a random
    horizontal offset.
    """
    from ..api import load_model, resolve_device
    from .swd import SWDAccumulator
    from ..training.data import open_dataset

    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    if fov < 1:
        raise UserError(f"--fov must be >= 1, got {fov}")
    dev = resolve_device(device)
    model = load_model(model_path)
    cfg = model.config
    dataset = open_dataset(data, cfg.training.full_size, cfg.training.pre_resize, seed=0)
    P = cfg.generator.patch_size
    if getattr(dataset, "full_size", cfg.training.full_size) < P:
        raise UserError(f"the data's images are smaller than the patch size {P}")
    t0 = time.perf_counter()
    acc = SWDAccumulator(seed=seed, device=dev)
    n_real = 0
    for batch in real_images(dataset, num, fov, P, seed):
        acc.add_real(batch)
        n_real += batch.shape[0]
    for batch in fake_images(model, num, fov, seed, dev):
        acc.add_fake(batch)
    res = acc.compute()
    out = {"metric": metric, "model": str(model_path) if model_path else "bundled", "data": data,
           "fov": fov, "num_fake": num, "num_real": n_real, "resolution": P, "seed": seed,
           "mean": res["mean"], "levels": res["levels"], "resolutions": res["resolutions"],
           "seconds": round(time.perf_counter() - t0, 3)}
    click.echo(json.dumps(out))
