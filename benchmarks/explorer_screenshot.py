"""Screenshot of the explorer (bundled model, seed 7) into docs/explorer.jpg. Run from the repository root:

    python benchmarks/explorer_screenshot.py
"""
import sys
sys.path.insert(0, "tests")
from browser import chromium, serving
from playwright.sync_api import sync_playwright
from infinitygan.api import load_model
from infinitygan.render import RenderOptions
from infinitygan.serve.app import create_app
from infinitygan.serve.scenes import SceneStore
from infinitygan.serve.tiles import TileRenderer

m = load_model()
renderer = TileRenderer(m, RenderOptions(device="cpu"), max_zoom=2)
app = create_app(renderer, scene_store=SceneStore(renderer))
with serving(app) as base, sync_playwright() as pw, chromium(pw) as b:
    page = b.new_page(viewport={"width": 1100, "height": 620})
    # a resampled region (seed 42) left of the centre, drawn by the scene tools
    scene = '{"centres":[],"resample":[{"region":[750,-160,256,256],"seed":42}]}'
    page.goto(base + "/#seed=7&x=1200&y=0&z=0&scene=" + scene)
    page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length >= 15 && document.querySelectorAll('img.leaflet-tile:not(.leaflet-tile-loaded)').length == 0", timeout=600000)
    page.wait_for_timeout(500)
    page.screenshot(path="docs/explorer.jpg", type="jpeg", quality=85)
print("ok")
