"""The ``pan`` subcommand: a fly-through video of the endless image."""
from __future__ import annotations

import click

from ..errors import UserError
from ..render.cli_options import options_from, render_options
from .formats import X264_PRESETS


@click.command("pan")
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="model file or training run directory (default: the bundled model)")
@click.option("--seed", default=0, show_default=True, type=int, help="image seed")
@click.option("--width", default=1920, show_default=True, type=int, help="frame width")
@click.option("--height", default=1080, show_default=True, type=int, help="frame height")
@click.option("--speed", default=4.0, show_default=True, type=float,
              help="camera speed in pixels per frame (negative: move left)")
@click.option("--frames", default=300, show_default=True, type=int, help="number of frames")
@click.option("--fps", default=30, show_default=True, type=int, help="frames per second")
@click.option("--crf", default=18, show_default=True, type=click.IntRange(0, 51),
              help="quality: 18 about visually lossless, higher is smaller")
@click.option("--preset", default="veryfast", show_default=True, type=click.Choice(X264_PRESETS),
              help="x264 speed preset (.mp4/.mkv)")
@click.option("--x", "x", default=None, type=int, help="left pixel of the first frame (default: centred on 0)")
@click.option("--y", "y", default=None, type=int, help="top pixel (default: centred on the horizon)")
@click.option("--strip", default=None, type=int, help="columns rendered at a time (default: the tile size)")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help=".mp4, .mkv (H.264) or .webm (VP9)")
@render_options(force=False, nproc=False)
def pan_cmd(model_path, seed, width, height, speed, frames, fps, crf, preset, x, y, strip, out, **kw):
    """Fly along the endless image of SEED: a video of a camera moving horizontally."""
    from ..api import load_model
    from ..render import require_tileable
    from .pan import MAX_FRAME_SIDE, VIDEO_FORMATS, Camera, _av, check_video_path, pan_to_file

    options, quiet = options_from(kw)
    Camera(0, 0, width, height, speed, frames)  # validates the frame size (the encoders' limit), frames, speed
    if strip is not None and not 0 < strip <= MAX_FRAME_SIDE:
        raise UserError(f"--strip must be in 1..{MAX_FRAME_SIDE}, got {strip}")
    path = check_video_path(out)
    fmt = VIDEO_FORMATS[path.suffix.lower()]
    if fmt[2] == "yuv420p" and (width % 2 or height % 2):
        raise UserError(f"{path.suffix} video needs an even width and height, got {width}x{height}")
    if not 1 <= fps <= 240:
        raise UserError(f"--fps must be in 1..240, got {fps}")
    _av()
    model = load_model(model_path)
    require_tileable(model, "pan (frames rendered strip by strip)")
    pan_to_file(model, path, seed, width, height, speed, frames, x, y, fps, crf, preset, strip, options)
    if not quiet:
        click.echo(f"wrote {path} ({width}x{height}, {frames} frames at {fps} fps)", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(pan_cmd)
