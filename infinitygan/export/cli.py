"""The ``export`` subcommand: the tile renderer as ONNX graphs and a manifest."""
from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)


@click.command("export")
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="model file or training run directory (default: the bundled model)")
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx"]),
              help="onnx: mapping, structure and texture graphs with dynamic batch and spatial sizes")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder to write")
def export_cmd(model_path, fmt, out):
    """Export the generator as the engine runs it (mapping; structure per GS window; texture per
    tile) with a manifest.json, for runtimes outside PyTorch."""
    from ..api import load_model
    from .onnx import export_onnx

    model = load_model(model_path)
    path = export_onnx(model, out)
    click.echo(f"wrote {path} (mapping.onnx, structure.onnx, texture.onnx, manifest.json)", err=True)
