"""The ``serve`` subcommand (registered into the ``infinitygan`` group by ``cli.py``)."""
from __future__ import annotations

import click

from ..errors import UserError


def register(cli: click.Group) -> None:
    cli.add_command(serve_cmd)


@click.command("serve")
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="model file or training run directory (default: the bundled model)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, mps or auto")
@click.option("--dtype", default="float32", show_default=True, help="float32, bfloat16 or float16")
@click.option("--max-zoom", default=2, show_default=True, type=int,
              help="most zoomed-out level (a tile at level z renders (256 * 2^z)^2 pixels)")
@click.option("--band", default=None, type=int, help="half height in pixels of the rows served around the horizon")
@click.option("--cache-mb", default=256.0, show_default=True, type=float, help="in-memory tile cache size")
@click.option("--max-queue", default=64, show_default=True, type=int, help="queued renders before answering 503")
@click.option("--batch-tiles", default=16, show_default=True, type=int, help="native tiles per shared render")
@click.option("--quiet", is_flag=True, help="no access log")
def serve_cmd(model_path, host, port, device, dtype, max_zoom, band, cache_mb, max_queue, batch_tiles, quiet):
    """Serve the infinite image as a web map: open http://HOST:PORT/ in a browser."""
    import math

    from ..api import load_model
    from ..render import RenderOptions, require_tileable
    from .tiles import MAX_ZOOM_LIMIT

    if not 0 <= max_zoom <= MAX_ZOOM_LIMIT:
        raise UserError(f"--max-zoom must be in 0..{MAX_ZOOM_LIMIT}, got {max_zoom}")
    if band is not None and not 0 < band <= 2 ** 40:
        raise UserError(f"--band must be in 1..2^40 pixels, got {band}")
    if not 0 < port < 65536:
        raise UserError(f"--port must be in 1..65535, got {port}")
    if not (math.isfinite(cache_mb) and 0 < cache_mb <= 2 ** 30):
        raise UserError(f"--cache-mb must be a positive finite number of MB, got {cache_mb}")
    for name, v in (("--max-queue", max_queue), ("--batch-tiles", batch_tiles)):
        if not 0 < v <= 1_000_000:
            raise UserError(f"{name} must be in 1..1000000, got {v}")
    try:
        import uvicorn

        from .app import create_app
    except ImportError:
        raise UserError("the tile server needs its extra: pip install 'infinitygan[serve]'") from None
    from .tiles import TileRenderer

    options = RenderOptions(device=device, dtype=dtype)  # checked: one line
    sock = _listen(host, port)  # a bad host or a busy port: one line, before any work
    model = load_model(model_path)
    require_tileable(model, "the tile server")
    renderer = TileRenderer(model, options, max_zoom=max_zoom, band=band)  # engine tile: the device's largest
    app = create_app(renderer, cache_mb, max_queue, batch_tiles, scene_store=_scene_store(model, renderer))
    if not quiet:
        click.echo(f"serving {model.config.name} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet))
    # Server.run (not uvicorn.run, which swallows Ctrl-C): after a graceful shutdown uvicorn
    # raises the signal it caught again, so Ctrl-C exits 130 and SIGTERM 143 like every command
    server.run(sockets=[sock])


def _listen(host: str, port: int):
    """A bound, listening socket for (host, port); UserError (one line) when that is impossible."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"cannot listen on {host}:{port}: unknown address ({e})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _scene_store(model, renderer):
    """Scene tools (style fusion) when that capability is installed; None otherwise."""
    try:
        from ..scene import bind  # noqa: F401 - the style-fusion room
        from .scenes import SceneStore
    except ImportError:
        return None
    return SceneStore(renderer)
