"""Training, data and metric subcommands of the ``infinitygan`` CLI: ``train``, ``prepare``, ``eval``.

``infinitygan.cli`` calls :func:`register` at import. Bad input raises ``UserError`` (one line,
exit code 2).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import UserError


def register(cli: click.Group) -> None:
    cli.add_command(train_cmd)
    cli.add_command(prepare_cmd)
    cli.add_command(eval_cmd)


# ==================================================================================== train
@click.command("train")
@click.option("--preset", default=None, help="preset name (tiny, paper-101, ...); default tiny, or the run's config on --resume")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="YAML config file (instead of --preset)")
@click.option("--data", default="procedural", show_default=True, help="'procedural', an image folder or an LMDB (see `prepare`)")
@click.option("--iterations", default=None, type=int, help="the run's total number of iterations (default: the config's)")
@click.option("--out", required=True, type=click.Path(), help="run directory")
@click.option("--resume", is_flag=True, help="continue the run in --out from its newest checkpoint")
@click.option("--batch", "batch", default=None, type=int, help="global batch size (default: the config's)")
@click.option("--workers", default=2, show_default=True, type=int, help="data loader processes per training process (0: load in-process)")
@click.option("--seed", default=None, type=int, help="seed of weights, latents and data order (default 0; the run's on --resume)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--amp", default="none", show_default=True, type=click.Choice(["none", "bf16"]), help="mixed precision")
@click.option("--checkpoint-every", default=None, type=int, help="iterations between checkpoints (default: the config's)")
@click.option("--sample-every", default=None, type=int, help="iterations between sample grids (default: the config's)")
@click.option("--log-every", default=None, type=int, help="iterations between TensorBoard logs (default: the config's)")
@click.option("--deterministic", is_flag=True, help="torch.use_deterministic_algorithms(True) where possible")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train_cmd(preset, config_file, data, iterations, out, resume, batch, workers, seed, device, amp,
              checkpoint_every, sample_every, log_every, deterministic, quiet):
    """Train InfinityGAN (multi-GPU/CPU: torchrun --nproc_per_node N -m infinitygan train ...).

    Writes OUT/config.yaml, OUT/checkpoints/ckpt-*.safetensors (newest 3), OUT/logs (TensorBoard)
    and OUT/samples/iter-*.png. `generate --model OUT` and `info OUT` read the newest checkpoint.
    """
    from ..config import load_config
    from .loop import train
    from .state import check_writable_dir, load_run_config

    if preset and config_file:
        raise UserError("pass either --preset or --config, not both")
    run = Path(out)
    check_writable_dir(run)
    if config_file:
        cfg = load_config(Path(config_file))
    elif preset:
        cfg = load_config(preset)
    elif resume and (run / "config.yaml").is_file():
        cfg = load_run_config(run)
    else:
        cfg = load_config("tiny")
    if iterations is not None and iterations < 1:
        raise UserError(f"--iterations must be >= 1, got {iterations}")
    if batch is not None and batch < 1:
        raise UserError(f"--batch must be >= 1, got {batch}")
    res = train(cfg, data, run, iterations=iterations, resume=resume, seed=seed, device=device, workers=workers,
                amp=amp, batch_size=batch, checkpoint_every=checkpoint_every, sample_every=sample_every,
                log_every=log_every, deterministic=deterministic, progress_bar=not quiet)
    if res["rank"] == 0:
        spi = res["seconds_per_iteration"]
        speed = f", {spi:.2f} s/iteration" if spi else ""
        click.echo(f"iteration {res['iteration']}, {res['images_seen']} images seen{speed}; "
                   f"checkpoint {res['checkpoint']}", err=True)


# ================================================================================== prepare
@click.command("prepare")
@click.argument("folder", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="LMDB to write (a directory, e.g. data.lmdb)")
@click.option("--full-size", default=197, show_default=True, type=int, help="side of the stored square images")
@click.option("--pre-resize", default=128, show_default=True, type=int, help="Lanczos pre-resize before full size (0: none)")
@click.option("--overwrite", is_flag=True, help="replace an existing --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
def prepare_cmd(folder, out, full_size, pre_resize, overwrite, quiet):
    """Pack an image FOLDER into a preprocessed LMDB for training."""
    from .data import prepare_lmdb

    if full_size < 1:
        raise UserError(f"--full-size must be positive, got {full_size}")
    if pre_resize < 0:
        raise UserError(f"--pre-resize must be >= 0, got {pre_resize}")
    n = prepare_lmdb(folder, out, full_size=full_size, pre_resize=pre_resize or None,
                     progress=not quiet, overwrite=overwrite)
    click.echo(f"wrote {out} ({n} images, {full_size}x{full_size})", err=True)


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

    from .data import PatchDataset

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
    from ..metrics.swd import SWDAccumulator
    from .data import open_dataset

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
