"""``infinitygan export --web DIR``: a static folder that explores the infinite image in the
visitor's browser, with no server of ours: index.html, the page's scripts (canvas.js computes
the canvas, explorer.js runs the graphs and the Leaflet map), Leaflet and onnxruntime-web's
WebAssembly and WebGPU builds (shipped in this package, no CDN; the page loads the WebGPU one
only when the browser gives a WebGPU adapter), and model/ (the ONNX export with its manifest,
plus the map's parameters), and .infinitygan-web.json listing those files (what a later
``--overwrite`` may replace). Any static host serves it (``python -m http.server``)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ..errors import UserError
from . import owned_folder as owned
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
#: what export --web wrote in the folder (owned_folder): the files --overwrite may replace
WEB_MANIFEST = ".infinitygan-web.json"


def export_web(model, out: str | Path, overwrite: bool = False) -> Path:
    """Write the static explorer of ``model`` to the folder ``out``.

    A non-empty ``out`` is refused unless ``overwrite``; then only the files an earlier
    ``export --web`` wrote there (listed in ``out/WEB_MANIFEST`` with their sha256, unchanged
    since) are replaced, and anything else in the way stops the export before a file is written
    (``owned_folder``). Everything is built in a staging folder first, then moved into place."""
    from ..render.pipeline import require_tileable

    require_tileable(model, "export")
    out = Path(out)
    if not all((WEB / "ort" / f).is_file() for f in ORT_FILES) or not LEAFLET.is_dir():
        raise UserError("this installation lacks the page's files (onnxruntime-web, Leaflet): reinstall infinitygan")
    if os.path.lexists(out) and not out.is_dir():
        raise UserError(f"--web must be a folder: {out} is a file")
    if out.is_dir():
        try:
            empty = next(os.scandir(out), None) is None
        except OSError as e:
            raise UserError(f"cannot read {out}: {e.strerror or e}") from None
        if not empty and not overwrite:
            raise UserError(f"{out} is not empty: --overwrite replaces the files an earlier export --web "
                            "wrote there (nothing else), or pick an empty folder")
    else:
        try:
            out.mkdir(parents=True)
        except OSError as e:
            raise UserError(f"cannot create {out}: {e.strerror or e}") from None
        try:
            _write_page(model, out)
        except BaseException:
            with contextlib.suppress(OSError):
                out.rmdir()  # the folder this call made, if the failed export left it empty
            raise
        return out
    # (checked before the ONNX export, and again on the files actually staged)
    owned.check_writable(out, _planned_files(), owned.read_manifest(out, WEB_MANIFEST), WEB_MANIFEST)
    _write_page(model, out)
    return out


def _write_page(model, out: Path) -> None:
    from ..serve.tiles import TILE_PX, X_LIMIT, default_band

    with owned.staging(out) as stage:
        export_onnx(model, stage / "model")
        manifest = json.loads((stage / "model" / "manifest.json").read_text())
        manifest["map"] = {"tile": TILE_PX, "band": default_band(model), "x_limit": X_LIMIT, "max_zoom": MAX_ZOOM}
        (stage / "model" / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            for name, src in _static_files().items():
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, stage / name)
        except OSError as e:
            raise UserError(f"cannot write to {out}: {e.strerror or e}") from None
        owned.install(out, stage, WEB_MANIFEST)


def _static_files() -> dict[str, Path]:
    """{path in the exported folder: source file} of the page, its stylesheet, onnxruntime-web and Leaflet."""
    files = {name: WEB / name for name in PAGE_FILES}
    files["explorer.css"] = STYLE
    for src, dst in ((WEB / "ort", "ort"), (LEAFLET, "leaflet")):
        files.update({f"{dst}/{p.relative_to(src).as_posix()}": p for p in sorted(src.rglob("*")) if p.is_file()})
    return files


def _planned_files() -> list[str]:
    from .onnx import GRAPHS

    return [*_static_files(), *(f"model/{g}.onnx" for g in GRAPHS), "model/manifest.json"]
