"""The ``convert-official`` subcommand: the authors' checkpoints -> our model files."""
from __future__ import annotations

import click



@click.command("convert-official")
@click.argument("checkpoint", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="model file to write (.safetensors)")
def convert_official_cmd(checkpoint, out):
    """Convert a checkpoint of the authors' code (its g_ema) into our model format."""
    from ..api import Model
    from .checkpoint import load_official_with_info

    gen, cfg, info = load_official_with_info(checkpoint)
    path = Model(gen, cfg).save(out)
    g = cfg.generator
    click.echo(f"wrote {path} (zg {g.zg_dim}, zl {g.zl_dim}, GT {g.ts_channels[0]} ch, {g.n_up} stages)")
    if info["keys"]:
        others = [k for k in info["keys"] if k != "g_ema"]
        fid = "n/a" if info["best_fid"] is None else f"{info['best_fid']:.4g}"
        it = "n/a" if info["iter"] is None else info["iter"]
        click.echo(f"source: iteration {it}, best FID {fid}; kept g_ema, ignored {', '.join(others) or 'nothing'}")


def register(cli: click.Group) -> None:
    cli.add_command(convert_official_cmd)
