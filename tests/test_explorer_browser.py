"""The explorer page in a real headless Chromium: loads without console errors, shows tiles,
fetches new tiles when dragged, keeps seed and position in the URL, changes seed, zooms out."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from browser import chromium, loaded_tiles, require_browser, serving

pytest.importorskip("uvicorn")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # (each test says so: require_browser)
    sync_playwright = None

from infinitygan.serve.app import create_app  # noqa: E402
from infinitygan.serve.scenes import SceneStore  # noqa: E402
from infinitygan.render import RenderOptions  # noqa: E402
from infinitygan.serve.tiles import TileRenderer  # noqa: E402


@pytest.fixture(autouse=True)
def needs_browser():
    require_browser()  # skipped without Chromium; fails under CI / INFINITYGAN_REQUIRE_BROWSER=1


TILE = re.compile(r"/tiles/(\d+)/(\d+)/(-?\d+)/(-?\d+)\.png")


def hash_state(url: str) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split("=") for p in urlparse(url).fragment.split("&")) if k != "scene"}


def hash_text(url: str) -> str:
    from urllib.parse import unquote

    return unquote(urlparse(url).fragment)


def test_explorer_page(tiny_model):
    renderer = TileRenderer(tiny_model, RenderOptions(device="cpu", tile=256), max_zoom=1, band=256)
    errors, tiles = [], []
    with serving(create_app(renderer, scene_store=SceneStore(renderer))) as base, sync_playwright() as pw, chromium(pw) as browser:
        page = browser.new_page(viewport={"width": 480, "height": 300})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # (tiles leaving the view are aborted by Leaflet: not a failure)
        page.on("requestfailed", lambda r: None if "ABORTED" in (r.failure or "") else errors.append(f"failed: {r.url}"))
        page.on("response", lambda r: tiles.append(TILE.search(r.url).groups()) if TILE.search(r.url) and r.ok
                else None)
        page.goto(base + "/#seed=3&x=100&y=0&z=0")
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length >= 4", timeout=60000)
        first = set(tiles)
        assert first and all(t[0] == "3" and t[1] == "0" for t in first)
        assert hash_state(page.url) == {"seed": 3, "x": 100, "y": 0, "z": 0}

        # drag the map 300 px to the left: the view moves right, new columns of tiles are fetched
        page.mouse.move(400, 150)
        page.mouse.down()
        for i in range(1, 7):
            page.mouse.move(400 - 50 * i, 150)
        page.mouse.up()
        # (Leaflet's inertia may carry the view a little further)
        page.wait_for_function("Number((location.hash.match(/x=(-?\\d+)/) || [])[1]) >= 390", timeout=10000)
        page.wait_for_function(
            "Array.from(document.querySelectorAll('img.leaflet-tile-loaded')).some(i => /\\/3\\/0\\/2\\/-?\\d+\\.png/.test(i.src))",
            timeout=60000)
        new = set(tiles) - first
        assert new and max(int(t[2]) for t in new) > max(int(t[2]) for t in first)
        s = hash_state(page.url)
        assert s["x"] >= 390 and s["seed"] == 3

        # another seed: the tiles of that seed are fetched, the URL follows
        page.fill("#seed", "5")
        page.press("#seed", "Enter")
        page.wait_for_function("location.hash.indexOf('seed=5') > 0", timeout=10000)
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"/tiles/5/\"]').length >= 2",
                               timeout=60000)

        # a shared link (a new hash) moves the view where it points
        page.evaluate("location.hash = '#seed=9&x=-4000&y=40&z=0'")
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"/tiles/9/0/-16/\"]').length >= 1",
                               timeout=60000)
        assert hash_state(page.url) == {"seed": 9, "x": -4000, "y": 40, "z": 0}

        # scene tools: resample the region under a click; its tiles come with ?scene=, the URL keeps it
        page.click("text=resample")
        page.mouse.click(240, 150)
        page.wait_for_function("location.hash.indexOf('scene=') > 0", timeout=10000)
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"?scene=\"]').length >= 2",
                               timeout=60000)
        assert "resample" in hash_text(page.url)
        # the link with its scene, opened afresh, shows the scene's tiles (already cached by the server)
        page2 = browser.new_page(viewport={"width": 480, "height": 300})
        page2.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page2.goto(page.url)
        page2.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"?scene=\"]').length >= 2",
                                timeout=60000)
        assert hash_text(page2.url) == hash_text(page.url)
        page2.close()

        # zoom out one level: tiles of level 1 (rendered from 512-pixel regions)
        page.click(".leaflet-control-zoom-out")
        page.wait_for_function("location.hash.indexOf('z=1') > 0", timeout=10000)
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"/tiles/9/1/\"]').length >= 1",
                               timeout=60000)
    assert not errors, errors


def test_explorer_registers_an_evicted_scene_again_and_shows_rendering(tiny_model):
    """The server forgets a scene (evicted, or restarted): the page's scene tiles get 404, the
    page registers the scene again (same id) and the map fills in instead of staying blank. The
    panel says while tiles are rendering."""
    renderer = TileRenderer(tiny_model, RenderOptions(device="cpu", tile=256), max_zoom=0, band=256)
    store = SceneStore(renderer)
    posts = []
    post = store.post
    store.post = lambda seed, data: posts.append(seed) or post(seed, data)
    scene = "%7B%22centres%22%3A%5B%5D%2C%22resample%22%3A%5B%7B%22region%22%3A%5B-128%2C-128%2C256%2C256%5D%2C%22seed%22%3A42%7D%5D%7D"
    with serving(create_app(renderer, scene_store=store)) as base, sync_playwright() as pw, chromium(pw) as browser:
        page = browser.new_page(viewport={"width": 480, "height": 300})
        seen_busy = []
        page.expose_function("sawBusy", lambda text: seen_busy.append(text))
        page.add_init_script("""new MutationObserver(function () {
            const b = document.getElementById('busy');
            if (b && !b.hidden) window.sawBusy(b.textContent);
        }).observe(document, {subtree: true, attributes: true, childList: true, characterData: true});""")
        page.goto(base + "/#seed=3&x=0&y=0&z=0&scene=" + scene)
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded[src*=\"?scene=\"]').length >= 4",
                               timeout=60000)
        assert posts == [3]
        assert any(t.startswith("rendering ") for t in seen_busy), seen_busy
        page.wait_for_function("document.getElementById('busy').hidden", timeout=60000)
        # the server forgets every scene and cached tile; the view moves to tiles never fetched
        store._scenes.clear()
        renderer._styles.clear()
        page.evaluate("location.hash = '#seed=3&x=2048&y=0&z=0&scene=" + scene + "'")
        page.wait_for_function(
            "document.querySelectorAll('img.leaflet-tile-loaded[src*=\"/tiles/3/0/8/\"][src*=\"?scene=\"]').length >= 1",
            timeout=60000)
        assert posts == [3, 3]  # registered again, once
