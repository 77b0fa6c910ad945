"""Scenes on the tile server: registration, validation, scene tiles (local changes only)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from infinitygan.serve.app import create_app  # noqa: E402
from infinitygan.serve.scenes import SceneStore  # noqa: E402
from infinitygan.render import RenderOptions  # noqa: E402
from infinitygan.serve.tiles import TileRenderer  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_model):
    renderer = TileRenderer(tiny_model, RenderOptions(device="cpu", tile=256), max_zoom=0, band=256)
    store = SceneStore(renderer)
    with TestClient(create_app(renderer, scene_store=store)) as c:
        yield c


def png(c, url) -> np.ndarray:
    r = c.get(url)
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)


def test_resampled_region_changes_its_tiles_only(client):
    assert client.get("/api/info").json()["scenes"] is True
    scene = {"resample": [{"region": [-128, -128, 256, 256], "seed": 42}]}
    r = client.post("/api/scenes/3", json=scene)
    assert r.status_code == 200
    sid = r.json()["id"]
    assert client.post("/api/scenes/3", json=scene).json()["id"] == sid  # content-addressed
    assert client.post("/api/scenes/4", json=scene).json()["id"] != sid
    inside = png(client, f"/tiles/3/0/0/-1.png?scene={sid}")
    assert np.abs(inside - png(client, "/tiles/3/0/0/-1.png")).mean() > 5
    # far from the resampled region (beyond every receptive field) the image is unchanged
    np.testing.assert_array_equal(png(client, f"/tiles/3/0/8/0.png?scene={sid}"), png(client, "/tiles/3/0/8/0.png"))
    e1 = client.get(f"/tiles/3/0/8/0.png?scene={sid}").headers["etag"]
    assert e1 != client.get("/tiles/3/0/8/0.png").headers["etag"]


def test_style_centres(client):
    sid = client.post("/api/scenes/3", json={"centres": [{"seed": 5, "point": [-600, 0]},
                                                         {"seed": 9, "point": [600, 0]}]}).json()["id"]
    left, right = png(client, f"/tiles/3/0/-4/0.png?scene={sid}"), png(client, f"/tiles/3/0/3/0.png?scene={sid}")
    assert left.shape == right.shape == (256, 256, 3)
    assert np.abs(left - png(client, "/tiles/3/0/-4/0.png")).mean() > 1  # another style than seed 3's


@pytest.mark.parametrize("body,status", [
    ({"centres": [{"seed": 5, "point": [0]}]}, 400),
    ({"centres": [{"seed": 5, "zg": "style.npy", "point": [0, 0]}]}, 400),  # no files, no vectors
    ({"centres": [{"seed": 5, "mask": {"file": "/etc/passwd"}}]}, 400),
    ({"resample": [{"region": [0, 0, 8, 8], "seed": 1}]}, 400),
    ({"resample": [{"region": [0, 0, 64, 64], "seed": 1}, {"region": [32, 32, 64, 64], "seed": 2}]}, 400),
    ({"resample": [{"region": [0, 0, 64, 64], "seed": -1}]}, 400),
    ({"centres": [{"seed": 1, "point": [0, 0]}] * 17}, 400),
    ({"model": "x.safetensors"}, 400),
    ([1, 2], 400),
    # refused when posted, not by every tile afterwards (they used to be 200, then 500 tiles)
    ({"centres": [{"seed": 1, "box": [0, 0, 100, 100]}, {"seed": 2, "box": [50, 50, 100, 100]}]}, 400),
    ({"centres": [{"seed": 1, "point": [0, 0]}, {"seed": 2, "point": [0, 0]}]}, 400),
])
def test_bad_scenes_are_refused(client, body, status):
    r = client.post("/api/scenes/3", json=body)
    assert r.status_code == status and "error" in r.json(), r.text


JSON = {"content-type": "application/json"}


def test_unknown_scene_and_bad_bodies(client):
    assert client.get("/tiles/3/0/0/0.png?scene=0123456789abcdef").status_code == 404
    assert client.get("/tiles/3/0/0/0.png?scene=../../etc").status_code == 404
    assert client.post("/api/scenes/3", content=b"{not json", headers=JSON).status_code == 400
    assert client.post("/api/scenes/x", json={}).status_code == 400
    assert client.post("/api/scenes/\u0663".encode().decode("unicode_escape"), json={}).status_code == 400
    assert client.post("/api/scenes/3", content=b" " * 20000, headers=JSON).status_code == 413
    assert client.get("/api/scenes/3").status_code == 405
    # only JSON; the size limit read from the header before the body; deep nesting is a 400
    assert client.post("/api/scenes/3", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/api/scenes/3", content=b"{}").status_code == 415
    r = client.post("/api/scenes/3", content=b"{}", headers={**JSON, "content-length": "99999999"})
    assert r.status_code == 413
    deep = b"[" * 5000 + b"]" * 5000
    r = client.post("/api/scenes/3", content=deep, headers=JSON)
    assert r.status_code == 400 and "error" in r.json()


def test_an_evicted_scene_still_renders_the_requests_that_took_it(tiny_model):
    """The store may evict a scene between a tile request's check and its render: the request
    carries the definition it took, so the tile renders (it used to be a 500)."""
    from infinitygan.serve.tiles import TileKey

    renderer = TileRenderer(tiny_model, RenderOptions(device="cpu", tile=256), max_zoom=0, band=256)
    store = SceneStore(renderer, max_scenes=1)
    a = store.post(3, {"resample": [{"region": [-128, -128, 256, 256], "seed": 42}]})
    definition = store.get(3, a)
    expected = renderer.render([TileKey(3, 0, 0, -1, a)])[0]
    renderer._styles.clear()  # nothing cached in the renderer either
    store.post(3, {"resample": [{"region": [0, 0, 64, 64], "seed": 7}]})  # evicts a
    assert not store.has(3, a)
    np.testing.assert_array_equal(renderer.render([TileKey(3, 0, 0, -1, a)], {(3, a): definition})[0], expected)
