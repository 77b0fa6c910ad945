"""``infinitygan export --web DIR``: a static folder that explores the infinite image in the
visitor's browser, with no server of ours: index.html, the page's scripts (canvas.js computes
the canvas, explorer.js runs the graphs and the Leaflet map), Leaflet and onnxruntime-web's
WebAssembly and WebGPU builds (shipped in this package, no CDN; the page loads the WebGPU one
only when the browser gives a WebGPU adapter), and model/ (the ONNX export with its manifest,
plus the map's parameters). Any static host serves it (``python -m http.server``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import UserError
from .onnx import export_onnx

WEB = Path(__file__).parent / "web"
LEAFLET = Path(__file__).resolve().parents[1] / "serve" / "static" / "leaflet"
PAGE_FILES = ("index.html", "explorer.js", "canvas.js")
#: the server's explorer stylesheet, shared (the two pages look alike)
STYLE = Path(__file__).resolve().parents[1] / "serve" / "static" / "explorer.css"
#: onnxruntime-web: the WebAssembly build and the WebGPU build (the page loads one of them)
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.webgpu.min.js", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
#: zoomed-out levels of the page (level k renders 4^k native tiles, as `serve --max-zoom`)
MAX_ZOOM = 2


def export_web(model, out: str | Path) -> Path:
    """Write the static explorer of ``model`` to the folder ``out``."""
    from ..serve.tiles import TILE_PX, X_LIMIT, default_band

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--web must be a folder: {out} is a file")
    if not all((WEB / "ort" / f).is_file() for f in ORT_FILES) or not LEAFLET.is_dir():
        raise UserError("this installation lacks the page's files (onnxruntime-web, Leaflet): reinstall infinitygan")
    export_onnx(model, out / "model")
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    manifest["map"] = {"tile": TILE_PX, "band": default_band(model), "x_limit": X_LIMIT, "max_zoom": MAX_ZOOM}
    (out / "model" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for name in PAGE_FILES:
        shutil.copyfile(WEB / name, out / name)
    shutil.copyfile(STYLE, out / "explorer.css")
    for src, dst in ((WEB / "ort", out / "ort"), (LEAFLET, out / "leaflet")):
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    return out
