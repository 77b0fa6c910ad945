"""The tile server: exact tiles, caching headers, validation, batching, bounded queue, drops."""
from __future__ import annotations

import asyncio
import io
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2 (same API)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from infinitygan.io.images import to_uint8  # noqa: E402
from infinitygan.serve.app import ClientGone, QueueFull, TileService, create_app  # noqa: E402
from infinitygan.render import RenderOptions  # noqa: E402
from conftest import default_sigint  # noqa: E402
from infinitygan.serve.tiles import TileKey, TileRenderer, downsample  # noqa: E402
from infinitygan.synthesis import Region  # noqa: E402


@pytest.fixture(scope="module")
def renderer(tiny_model):
    return TileRenderer(tiny_model, RenderOptions(device="cpu", tile=128), max_zoom=1, band=512,
                        batch_pixels=4 * 128 * 128)


@pytest.fixture(scope="module")
def client(renderer):
    with TestClient(create_app(renderer, cache_mb=16)) as c:
        yield c


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def same_picture(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float rounding: the engine's band path (shared GS, channels_last) and the
    server's per-tile forwards differ by ~1e-6, which flips a rare rounding by one level."""
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-3, (d.max(), (d > 0).mean())


def test_tiles_are_crops_of_the_image(client, tiny_model):
    synth = tiny_model.synthesizer("cpu")
    r = client.get("/tiles/3/0/1/-1.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    ref = to_uint8(synth.render(tiny_model.canvas(3), Region(256, -256, 256, 256), tile=256))
    same_picture(decode(r.content), ref)
    # zoomed out: the 512 x 512 region of tile (1, -1, 0), 2x2 box-filtered
    r = client.get("/tiles/3/1/-1/0.png")
    big = synth.render(tiny_model.canvas(3), Region(-512, 0, 512, 512), tile=256)
    same_picture(decode(r.content), to_uint8(downsample(big, 2)))
    # neighbouring tiles meet seamlessly: the tile one to the left is the region's left neighbour
    r = client.get("/tiles/3/0/0/-1.png")
    pair = to_uint8(synth.render(tiny_model.canvas(3), Region(0, -256, 512, 256), tile=512))
    same_picture(np.concatenate([decode(r.content), decode(client.get("/tiles/3/0/1/-1.png").content)], 1), pair)
    for fmt, mime in (("webp", "image/webp"), ("jpg", "image/jpeg")):
        r = client.get(f"/tiles/3/0/1/-1.{fmt}")
        assert r.status_code == 200 and r.headers["content-type"] == mime
        assert np.abs(decode(r.content).astype(int) - ref).mean() < 25  # lossy, but the same picture


def test_bytes_do_not_depend_on_batching(renderer):
    keys = [TileKey(6, 0, x, 0) for x in range(-1, 2)] + [TileKey(6, 1, 0, -1)]
    together = renderer.render(keys)
    for k, img in zip(keys, together):
        np.testing.assert_array_equal(renderer.render([k])[0], img)


def test_etag_304_and_same_bytes_from_a_fresh_server(client, tiny_model):
    a = client.get("/tiles/4/0/-3/0.png")
    etag = a.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "immutable" in a.headers["cache-control"] and "max-age=31536000" in a.headers["cache-control"]
    r = client.get("/tiles/4/0/-3/0.png", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert client.get("/tiles/4/0/-3/0.png", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/tiles/5/0/-3/0.png").headers["etag"] != etag
    fresh = TileRenderer(tiny_model, RenderOptions(device="cpu", tile=128), max_zoom=1, band=512)
    with TestClient(create_app(fresh)) as c2:
        b = c2.get("/tiles/4/0/-3/0.png")
    assert b.content == a.content and b.headers["etag"] == etag


@pytest.mark.parametrize("url,status", [
    ("/tiles/abc/0/0/0.png", 400),
    ("/tiles/-1/0/0/0.png", 400),
    ("/tiles/9007199254740992/0/0/0.png", 400),
    ("/tiles/1/0/0.5/0.png", 400),
    ("/tiles/1/0/0/1e3.png", 400),
    ("/tiles/1/0/99999999999999999999999/0.png", 400),
    ("/tiles/1/2/0/0.png", 404),     # beyond max_zoom
    ("/tiles/1/-1/0/0.png", 404),
    ("/tiles/1/0/0/2.png", 404),     # below the band
    ("/tiles/1/0/0/-3.png", 404),    # above the band
    ("/tiles/1/0/4294967296/0.png", 404),  # |x| beyond 2^40 pixels
    ("/tiles/1/0/0/0.gif", 404),
    ("/tiles/1/0/0/0.png?scene=ab12", 404),  # no scenes on this server
    ("/nothing/here", 404),
])
def test_bad_requests_get_short_json(client, url, status):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and len(r.json()["error"]) < 120


def test_edges_of_the_map_are_served(client):
    assert client.get("/tiles/9007199254740991/0/0/1.png").status_code == 200  # largest seed, last band row
    assert client.get("/tiles/1/0/-4294967296/-2.png").status_code == 200  # x = -2^40, first band row


def test_page_info_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "leaflet.js" in r.text and "explorer.js" in r.text
    info = client.get("/api/info").json()
    assert info["tile"] == 256 and info["max_zoom"] == 1 and info["band"] == 512
    for path in ("/static/leaflet/leaflet.js", "/static/leaflet/leaflet.css", "/static/explorer.js"):
        assert client.get(path).status_code == 200


def test_full_queue_answers_503(renderer):
    with TestClient(create_app(renderer, max_queue=0)) as c:
        r = c.get("/tiles/8/0/0/0.png")
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "error" in r.json()
        assert c.get("/api/stats").json()["rejected_503"] == 1


class GatedRenderer(TileRenderer):
    """Renders only when the gate opens (to hold jobs in the queue)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.gate = threading.Event()
        self.calls: list[list[TileKey]] = []

    def render(self, keys, scenes=None):
        self.gate.wait(30)
        self.calls.append(list(keys))
        return super().render(keys, scenes)


def test_concurrent_requests_share_forwards_queue_bounds_and_drops(tiny_model):
    r = GatedRenderer(tiny_model, RenderOptions(device="cpu", tile=128), max_zoom=1, band=512,
                      batch_pixels=16 * 256 * 256)

    async def main():
        svc = TileService(r, cache_bytes=1 << 24, max_queue=4, batch_tiles=16)
        await svc.start()
        loop = asyncio.get_running_loop()
        never = loop.create_future  # a client that never goes away
        # the first job goes to the (gated) worker, then 4 fill the queue
        first = asyncio.ensure_future(svc.fetch(TileKey(1, 0, 0, 0), "png", never))
        await asyncio.sleep(0.05)
        keys = [TileKey(1, 0, x, -1) for x in range(3)] + [TileKey(2, 0, 0, 0)]
        gone = asyncio.get_running_loop().create_future()
        waits = [asyncio.ensure_future(svc.fetch(k, "png", never if i else (lambda: gone))) for i, k in enumerate(keys)]
        dup = asyncio.ensure_future(svc.fetch(keys[1], "png", never))  # shares the queued job
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await svc.fetch(TileKey(3, 0, 0, 0), "png", never)
        gone.set_result(None)  # the first queued request's client goes away
        with pytest.raises(ClientGone):
            await waits[0]
        r.gate.set()
        got = await asyncio.gather(first, *waits[1:], dup)
        await svc.stop()
        return svc, got

    svc, got = asyncio.run(main())
    # the first render had one key; then seed 1's two remaining tiles in one shared forward, then seed 2
    assert [len(c) for c in r.calls] == [1, 2, 1]
    assert [k.seed for k in r.calls[1]] == [1, 1] and TileKey(1, 0, 0, -1) not in sum(r.calls, [])
    assert svc.stats["dropped"] == 1 and svc.stats["rejected_503"] == 1 and svc.stats["rendered"] == 4
    assert got[-1] == got[1]  # the duplicate request got the shared job's bytes
    ref = r.render([TileKey(1, 0, 2, -1)])[0]
    np.testing.assert_array_equal(decode(got[2]), ref)


def test_render_failure_is_a_500_not_a_crash(tiny_model, caplog):
    class Broken(TileRenderer):
        def render(self, keys, scenes=None):
            if keys[0].seed == 13:
                raise RuntimeError("boom /secret/path")
            return super().render(keys, scenes)

    with TestClient(create_app(Broken(tiny_model, RenderOptions(device="cpu", tile=128), max_zoom=0, band=256))) as c:
        r = c.get("/tiles/13/0/0/0.png")
        assert r.status_code == 500 and r.json() == {"error": "render failed"}  # no internal text
        assert c.get("/tiles/12/0/0/0.png").status_code == 200
    assert "boom /secret/path" in caplog.text  # the details are in the server's log


def test_tile_coordinates_and_seeds_are_ascii_digits(renderer):
    with TestClient(create_app(renderer)) as c:
        assert c.get("/tiles/1/0/\u0663/0.png".encode().decode("unicode_escape")).status_code == 400  # Arabic-Indic 3
        assert c.get("/tiles/\u0661/0/0/0.png".encode().decode("unicode_escape")).status_code == 400


@pytest.mark.parametrize("args,needle", [
    (["--max-zoom", "9"], "--max-zoom"),
    (["--band", "0"], "--band"),
    (["--port", "70000"], "--port"),
    (["--max-queue", "0"], "--max-queue"),
    (["--device", "tpu"], "device"),
])
def test_serve_bad_input_one_line_exit_2(capsys, args, needle):
    from infinitygan.cli import main

    rc = main(["serve", *args, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_serve_refuses_a_busy_port_or_bad_host_and_stops_on_signals(tmp_path):
    """A busy port or an unknown host: one line, exit 2, before "serving on". SIGTERM and Ctrl-C
    stop the server with 143 and 130 (uvicorn.run used to swallow them: exit 0)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for args in (["--port", str(port)], ["--host", "999.1.1.1"]):
        r = subprocess.run([sys.executable, "-m", "infinitygan", "serve", *args], capture_output=True, text=True,
                           timeout=120, env=env)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "cannot listen on" in lines[0], r.stderr
    busy.close()
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        p = subprocess.Popen([sys.executable, "-m", "infinitygan", "serve", "--port", str(port), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=5)
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1].decode()
                time.sleep(0.2)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        assert p.returncode == code, err.decode()
