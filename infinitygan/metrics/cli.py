"""Metric subcommand of the ``infinitygan`` CLI: ``eval``.

``infinitygan.cli`` calls :func:`register` at import. Bad input raises ``UserError`` (one line,
exit code 2).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import click

from ..errors import UserError

CSV_FIELDS = ("model", "metric", "scale", "resize", "value", "std", "num_fake", "num_real", "full_size",
              "reference_size", "generated_size", "compared_size", "seed", "data", "seconds")


def register(cli: click.Group) -> None:
    cli.add_command(eval_cmd)


#: largest field-of-view scale of the protocol (the paper reports up to 8x)
MAX_SCALE = 32
#: most images per set
MAX_NUM = 100_000


def _scales(text: str) -> list:
    """``--scale``: comma-separated positive integers and/or ``patch``."""
    from .protocol import PATCH

    out = []
    for t in (t.strip() for t in text.split(",")):
        if not t:
            continue
        if t == PATCH:
            out.append(PATCH)
            continue
        try:
            v = int(t)
        except ValueError:
            raise UserError(f"--scale must be comma-separated positive integers or {PATCH!r}, got {text!r}") from None
        if not 1 <= v <= MAX_SCALE:
            raise UserError(f"--scale must be integers in 1..{MAX_SCALE} or {PATCH!r}, got {text!r} (a view at scale N "
                            f"is N x the training image: 32 x 197 px is already 6304 px a side)")
        out.append(v)
    if not out:
        raise UserError(f"--scale must be comma-separated positive integers or {PATCH!r}, got {text!r}")
    return out


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """The rows as CSV (columns :data:`CSV_FIELDS`), written to a temp file and renamed."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, p)


@click.command("eval")
@click.option("--metric", default="swd", show_default=True, type=click.Choice(["fid", "kid", "swd"]))
@click.option("--scale", "scales", default="1", show_default=True,
              help="comma-separated columns: N (views N times the full size, downsampled to the reference size) "
                   "and/or 'patch' (the generator's training patches against crops of the real full images)")
@click.option("--reference-size", "reference_size", default=None, type=int,
              help="size the N x columns compare at (default: the model's training.pre_resize, 128 for the presets; "
                   "its full size when there is none)")
@click.option("--resize", "resize", default="paper", show_default=True,
              help="paper (bilinear, align_corners=True, as in the authors' code), clean (antialiased bicubic) or paper,clean")
@click.option("--model", "model_path", default=None, type=click.Path(), help="model file or run directory (default: bundled)")
@click.option("--data", default="procedural", show_default=True, help="'procedural', an image folder or an LMDB")
@click.option("--num", default=1000, show_default=True, type=int, help="images per set (fake and real)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the views, the real set and the metric")
@click.option("--floor", is_flag=True, help="instead of a model: the metric between two disjoint real sets of --num images")
@click.option("--inception-weights", default=None, type=click.Path(),
              help="torch-fidelity's Inception-v3 weights file (FID/KID; default: $INFINITYGAN_INCEPTION_WEIGHTS, then torch's hub cache)")
@click.option("--cache-dir", default=None, type=click.Path(), help="reference-statistics cache (default: $INFINITYGAN_CACHE or ~/.cache/infinitygan)")
@click.option("--no-cache", is_flag=True, help="do not read or write cached reference statistics")
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False), help="also write the rows to this CSV file")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bar")
def eval_cmd(metric, scales, reference_size, resize, model_path, data, num, seed, floor, inception_weights, cache_dir, no_cache,
             csv_path, device, quiet):
    """Print one JSON object per column (and resize mode): metric, scale, resize, value, ...

    The paper's protocol (Section 4.1, Table 1, Appendix S): at scale N, views of N F x N F pixels
    (F: the model's training.full_size, 197 for the presets) of random canvas seeds, random
    horizontal positions and vertical placements drawn like the training windows', downsampled
    to the reference size R (the data's pre-resize, 128 for the presets) and compared with --num
    whole real images at R (center-cropped and Lanczos-resized to R, never upsampled). Column
    'patch': the generator's P x P training-size patches (101) against P x P crops of the
    preprocessed real F x F images. FID/KID use the standard Inception-v3
    pool3 features (torch-fidelity; weights never downloaded), SWD the Laplacian-pyramid sliced
    Wasserstein distance (x1e3). Lower is better. See docs/evaluation.md.
    """
    from ..api import load_model, resolve_device
    from .evaluate import default_cache_dir, evaluate
    from .protocol import RESIZE_MODES

    if not 2 <= num <= MAX_NUM:
        raise UserError(f"--num must be in 2..{MAX_NUM:,} (the paper's FID uses 50,000), got {num}")
    scale_list = _scales(scales)
    if reference_size is not None and reference_size < 1:
        raise UserError(f"--reference-size must be a positive integer, got {reference_size}")
    modes = [m.strip() for m in resize.split(",") if m.strip()]
    bad = [m for m in modes if m not in RESIZE_MODES]
    if bad or not modes:
        raise UserError(f"unknown --resize {resize!r} (choose from {', '.join(RESIZE_MODES)}, or both: paper,clean)")
    if csv_path:
        parent = Path(csv_path).expanduser().parent
        if not parent.is_dir():
            raise UserError(f"--csv folder does not exist: {parent}")
    dev = resolve_device(device)
    model = load_model(model_path)
    cache = None if no_cache else (Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    rows = []
    for row in evaluate(model, data, metric, scale_list, modes, num, seed=seed, device=dev,
                        inception_weights=inception_weights, cache_dir=cache, floor=floor,
                        progress=not quiet, model_name=str(model_path) if model_path else "bundled",
                        reference_size=reference_size):
        click.echo(json.dumps(row))
        rows.append(row)
    if csv_path:
        write_csv(Path(csv_path).expanduser(), rows)
