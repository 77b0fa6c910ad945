"""The in-browser explorer (`infinitygan export --web`, issue 18): time per tile and agreement
with the tile server, in headless Chromium (Debian's /usr/bin/chromium).

    python benchmarks/web_explorer.py [--model M] [--width 960 --height 420] [--screenshot docs/explorer-web.jpg]
    python benchmarks/web_explorer.py --backend webgpu --swiftshader --width 256 --height 256

`--backend` is the page's `?backend=` (auto: WebGPU when the browser gives an adapter);
`--swiftshader` starts Chromium with a WebGPU adapter emulated on the CPU (SwiftShader): the
WebGPU path's correctness, not a GPU's speed.

Exports the model's static page to a temporary folder, serves it with a plain static server on
loopback, opens it, waits until every visible tile is drawn, and prints one JSON object: the
page's own timing of each tile (performance.now around canvas + structure + texture, one
WebAssembly thread), the time to the first tiles, and the largest difference of three tiles
from `serve`'s renderer (8-bit levels).
"""
from __future__ import annotations

import argparse
import base64
import functools
import http.server
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--height", type=int, default=420)
    ap.add_argument("--screenshot", default=None)
    ap.add_argument("--backend", choices=("auto", "wasm", "webgpu"), default="auto")
    ap.add_argument("--swiftshader", action="store_true", help="a WebGPU adapter emulated on the CPU")
    args = ap.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM, CHROMIUM_ARGS, WEBGPU_ARGS, free_port
    import infinitygan as ig
    from infinitygan.export.web_page import export_web
    from infinitygan.render import RenderOptions
    from infinitygan.serve.tiles import TileKey, TileRenderer

    model = ig.load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_web(model, tmp)
        export_s = time.perf_counter() - t0
        handler = functools.partial(_Quiet, directory=tmp)
        port = free_port()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        errors: list[str] = []
        try:
            with sync_playwright() as pw:
                flags = [a for a in CHROMIUM_ARGS if a != "--disable-gpu"] + WEBGPU_ARGS if args.swiftshader else CHROMIUM_ARGS
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                t0 = time.perf_counter()
                query = "" if args.backend == "auto" else f"?backend={args.backend}"
                page.goto(f"http://127.0.0.1:{port}/{query}#seed={args.seed}&x=128&y=0")
                page.wait_for_function("document.querySelectorAll('canvas[data-tile]').length >= 1", timeout=300000)
                first_s = time.perf_counter() - t0
                page.wait_for_function("document.getElementById('busy').hidden", timeout=600000)
                timings = page.evaluate("window.explorer.timings")
                backend = page.evaluate("window.explorer.backend")
                tiles = page.evaluate("Array.from(document.querySelectorAll('canvas[data-tile]'))"
                                      ".map(c => [c.dataset.tile, c.toDataURL('image/png')])")
                if args.screenshot:
                    page.screenshot(path=str(Path(args.screenshot).with_suffix(".png")))
                browser.close()
        finally:
            server.shutdown()
    renderer = TileRenderer(model, RenderOptions(device="cpu"), max_zoom=0)
    diff = 0
    for name, url in tiles[:3]:
        s, z, x, y = (int(v) for v in name.split("/"))
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
        diff = max(diff, int(np.abs(got - renderer.render([TileKey(s, z, x, y)])[0].astype(int)).max()))
    if args.screenshot:
        png = Path(args.screenshot).with_suffix(".png")
        Image.open(png).convert("RGB").save(args.screenshot, quality=90)
        if png != Path(args.screenshot):
            png.unlink()
    later = sorted(timings[1:])
    print(json.dumps({"model": model.config.name, "backend": backend, "swiftshader": args.swiftshader,
                      "tiles": len(timings), "export_seconds": round(export_s, 1),
                      "first_tiles_seconds": round(first_s, 1), "first_tile_ms": round(timings[0]),
                      "median_ms_per_tile": round(later[len(later) // 2]) if later else None,
                      "max_diff_vs_server_levels": diff, "console_errors": errors[:3],
                      "viewport": [args.width, args.height]}))


if __name__ == "__main__":
    main()
