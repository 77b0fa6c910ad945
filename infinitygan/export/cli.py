"""The ``export`` subcommand: the tile renderer as ONNX graphs and a manifest."""
from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)


@click.command("export")
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="model file or training run directory (default: the bundled model)")
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx", "torchscript"]),
              help="onnx or torchscript: mapping, structure and texture networks with dynamic batch and spatial sizes")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="folder to write the graphs to")
@click.option("--web", default=None, type=click.Path(file_okay=False),
              help="instead: a static folder exploring the image in the browser (no server; any static host); "
                   "refused if it is not empty, unless --overwrite")
@click.option("--overwrite", is_flag=True,
              help="with --web: replace the files an earlier export --web wrote in the folder (only those, and "
                   "only if unchanged; anything else in the way stops the export)")
def export_cmd(model_path, fmt, out, web, overwrite):
    """Export the generator as the engine runs it (mapping; structure per GS window; texture per
    tile) with a manifest.json, for runtimes outside PyTorch; or, with --web, a static explorer
    page that renders every tile in the visitor's browser."""
    from ..errors import UserError

    if (out is None) == (web is None):
        raise UserError("give either --out (the graphs) or --web (the static explorer page)")
    if overwrite and web is None:
        raise UserError("--overwrite goes with --web (--out writes its four files into the folder as it is)")
    from ..api import load_model

    model = load_model(model_path)
    if web is not None:
        from .web_page import export_web

        path = export_web(model, web, overwrite=overwrite)
        click.echo(f"wrote {path} (index.html; serve the folder, e.g. python -m http.server -d {path})", err=True)
        return
    if fmt == "torchscript":
        from .torchscript import export_torchscript

        path = export_torchscript(model, out)
        click.echo(f"wrote {path} (mapping.pt, structure.pt, texture.pt, manifest.json)", err=True)
        return
    from .onnx import export_onnx

    path = export_onnx(model, out)
    click.echo(f"wrote {path} (mapping.onnx, structure.onnx, texture.onnx, manifest.json)", err=True)
