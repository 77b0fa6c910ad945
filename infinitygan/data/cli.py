"""The ``prepare`` subcommand: pack an image folder into a preprocessed LMDB (training and
metrics read it). Bad input raises ``UserError`` (one line, exit code 2)."""
from __future__ import annotations

import click

from ..errors import UserError


def register(cli: click.Group) -> None:
    cli.add_command(prepare_cmd)


@click.command("prepare")
@click.argument("folder", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="LMDB to write (a directory, e.g. data.lmdb)")
@click.option("--full-size", default=197, show_default=True, type=int, help="side of the stored square images")
@click.option("--pre-resize", default=128, show_default=True, type=int, help="Lanczos pre-resize before full size (0: none)")
@click.option("--overwrite", is_flag=True, help="replace an existing --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
def prepare_cmd(folder, out, full_size, pre_resize, overwrite, quiet):
    """Pack an image FOLDER into a preprocessed LMDB for training."""
    from .lmdb_pack import prepare_lmdb

    if not 1 <= full_size <= 8192:
        raise UserError(f"--full-size must be in 1..8192 pixels, got {full_size}")
    if not 0 <= pre_resize <= 8192:
        raise UserError(f"--pre-resize must be in 0..8192 pixels, got {pre_resize}")
    n = prepare_lmdb(folder, out, full_size=full_size, pre_resize=pre_resize or None,
                     progress=not quiet, overwrite=overwrite)
    click.echo(f"wrote {out} ({n} images, {full_size}x{full_size})", err=True)
