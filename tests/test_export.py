"""ONNX export of the tile renderer: the three graphs reproduce the engine's tiles through
onnxruntime alone (inputs from the canvas as the engine computes them), at two tile sizes and
far from the origin; bad input is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from infinitygan.cli import main  # noqa: E402
from infinitygan.synthesis import Region  # noqa: E402

#: float32 through two runtimes: measured up to 2e-5 on the tiny model (0.002 of an 8-bit level)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def web(tiny_model_file, tmp_path_factory):
    """`export --web` of the tiny model: the static page with the ONNX export in model/."""
    out = tmp_path_factory.mktemp("web")
    assert main(["export", "--model", str(tiny_model_file), "--web", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported(web):
    return web / "model"


def render_with_onnx(folder, model, seed: int, region: Region, tile: int) -> np.ndarray:
    """The region rendered by the exported graphs, tile by tile, from the engine's tile inputs."""
    sess = {k: ort.InferenceSession(str(folder / f"{k}.onnx"), providers=["CPUExecutionProvider"])
            for k in ("mapping", "structure", "texture")}
    synth = model.synthesizer("cpu")
    canvas = model.canvas(seed)
    tiles = list(synth.planner.tile_plan(region, tile))
    zl, coords, noises = synth._inputs(canvas, tiles)
    zg = canvas.zg().numpy()
    b = len(tiles)
    w = sess["mapping"].run(None, {"zg": zg})[0]
    styles = np.repeat(w[:, None], model.generator.n_styles, axis=1).repeat(b, 0)
    zs = sess["structure"].run(None, {"zg": zg.repeat(b, 0), "zl": zl.numpy(), "coords": coords.numpy()})[0]
    rgb = sess["texture"].run(None, {"zs": zs, "styles": styles,
                                     **{f"noise_{j}": n.numpy() for j, n in enumerate(noises)}})[0]
    out = np.empty((region.height, region.width, 3), np.float32)
    for t, img in zip(tiles, rgb):
        out[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] = \
            img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0].transpose(1, 2, 0)
    return out


@pytest.mark.parametrize("tile,x,y", [(32, -40, -24), (64, 2 ** 40 + 16, -64)])
def test_exported_graphs_reproduce_the_engine(exported, tiny_model, tile, x, y):
    region = Region(x, y, 96, 80)
    ref = tiny_model.synthesizer("cpu").render(tiny_model.canvas(7), region, tile)
    got = render_with_onnx(exported, tiny_model, 7, region, tile)
    assert np.abs(got - ref).max() < TOLERANCE


def test_manifest_describes_the_files(exported, tiny_model):
    from infinitygan.export.onnx import model_fingerprint

    m = json.loads((exported / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["model_sha256"] == model_fingerprint(tiny_model.generator)
    g = tiny_model.generator.geometry
    assert m["geometry"]["lattice"] == g.lattice and m["geometry"]["gs_margin"] == g.gs_margin
    assert m["graphs"]["texture"]["inputs"] == ["zs", "styles"] + [f"noise_{j}" for j in range(8)]
    for k in ("mapping", "structure", "texture"):
        names = [i.name for i in ort.InferenceSession(str(exported / f"{k}.onnx")).get_inputs()]
        assert names == m["graphs"][k]["inputs"]


def test_the_export_check_compares_with_the_engine(exported, tiny_model):
    """``check_export`` (what ``export_onnx(check=True)`` runs): the graphs of the tiny model pass;
    the same graphs against a model whose weights moved do not (one line)."""
    import copy

    import torch

    from infinitygan.errors import UserError
    from infinitygan.export.onnx import check_export

    check_export(tiny_model, exported)
    moved = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(moved.generator.texture.parameters()).add_(0.01)
    with pytest.raises(UserError, match="texture.onnx differs from the engine by"):
        check_export(moved, exported)


def test_export_onnx_checks_unless_told_not_to(tiny_model, tmp_path, monkeypatch):
    """With check=True a graph that is not a valid model is refused, its files removed and no
    manifest written; check=False skips the check (and writes the manifest)."""
    import torch

    from infinitygan.errors import UserError
    from infinitygan.export.onnx import export_onnx

    monkeypatch.setattr(torch.onnx, "export", lambda module, args, path, **kw: Path(path).write_bytes(b"not onnx"))
    with pytest.raises(UserError, match="mapping.onnx fails its check"):
        export_onnx(tiny_model, tmp_path / "checked")
    assert list((tmp_path / "checked").iterdir()) == []
    export_onnx(tiny_model, tmp_path / "unchecked", check=False)
    assert sorted(p.name for p in (tmp_path / "unchecked").iterdir()) == \
        ["manifest.json", "mapping.onnx", "structure.onnx", "texture.onnx"]


@pytest.mark.parametrize("args,needle", [
    (["--format", "tflite"], "tflite"),
    (["--model", "nci.safetensors"], "padding-free generator"),
    (["--out", "afile"], "is a file"),
])
def test_bad_input_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--preset", "stylegan2-nci", "--out", "nci.safetensors"]) == 0
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    argv = ["export", *args] + ([] if "--out" in args else ["--out", "dir"])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "dir").exists()


@pytest.mark.slow
def test_a_reduced_width_paper_389_exports_too(tmp_path):
    """paper-389's topology (6 upsampling stages, 64-pixel lattice) at small widths."""
    import dataclasses

    import torch

    from infinitygan.api import Model, build_generator
    from infinitygan.config import load_config

    cfg = load_config("paper-389")
    gen = dataclasses.replace(cfg.generator, zg_dim=32, zl_dim=8, style_dim=32, mapping_layers=2, gs_channels=16,
                              ts_channels=[32] * 8 + [16] * 4)
    cfg = dataclasses.replace(cfg, name="paper-389-narrow", generator=gen)
    torch.manual_seed(0)
    model = Model(build_generator(cfg).eval(), cfg)
    path = model.save(tmp_path / "m.safetensors")
    assert main(["export", "--model", str(path), "--out", str(tmp_path / "x")]) == 0
    for tile, x in ((64, -64), (128, 2 ** 40)):
        region = Region(x, -96, 192, 128)
        ref = model.synthesizer("cpu").render(model.canvas(3), region, tile)
        assert np.abs(render_with_onnx(tmp_path / "x", model, 3, region, tile) - ref).max() < TOLERANCE


@pytest.mark.parametrize("tile,x", [(64, -128), (128, 2 ** 40)])
def test_generate_with_the_onnx_runtime_imports_no_torch_and_matches(exported, tiny_model_file, tmp_path, tile, x):
    """`generate --runtime onnx --model EXPORT_DIR`: the manifest and the graphs are enough (the
    canvas is recomputed with numpy), within 2/255 of `generate` (measured: at most 1 level)."""
    import subprocess
    import sys

    from PIL import Image

    args = ["--seed", "3", "--width", "208", "--height", "96", "--x", str(x), "--tile", str(tile), "--quiet"]
    code = ("import sys\nfrom infinitygan.cli import main\n"
            f"rc = main(['generate', '--runtime', 'onnx', '--model', {str(exported)!r}, *{args!r}, "
            f"'--out', {str(tmp_path / 'onnx.png')!r}])\n"
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ["0", "False"], r.stderr[-2000:]
    assert main(["generate", "--model", str(tiny_model_file), *args, "--out", str(tmp_path / "torch.png")]) == 0
    a = np.asarray(Image.open(tmp_path / "onnx.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "torch.png")).astype(int)
    assert a.shape == b.shape == (96, 208, 3) and np.abs(a - b).max() <= 2


@pytest.mark.parametrize("args,needle", [
    (["--runtime", "onnx"], "export folder"),
    (["--runtime", "onnx", "--model", "."], "not an export folder"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--style", "1@0,0"], "plain seeds"),
    # the engine's RenderOptions, with its limits; what the runtime cannot honour is refused, not ignored
    (["--runtime", "onnx", "--model", "EXPORTED", "--batch", "2000"], "--batch must be at most 1,024"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--tile", "0"], "--tile must be >= 1"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--device", "tpu"], "unknown device"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--device", "mps:0"], "available"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--dtype", "float16"], "float32"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--max-memory", "64"], "give --tile"),
    (["--runtime", "onnx", "--model", "EXPORTED", "--nproc", "2"], "one process"),
])
def test_onnx_runtime_bad_input(exported, tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    argv = ["generate", *[str(exported) if a == "EXPORTED" else a for a in args], "--out", "o.png"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o.png").exists()


import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from browser import WEBGPU_ARGS, require_webgpu_adapter  # noqa: E402


def page_tiles(web, url: str, want: list[str], viewport: tuple[int, int], extra_args: list[str] = ()):
    """Open the exported folder (a plain static server, headless Chromium) at ``url`` (path and
    hash), then for each JS condition of ``want`` in turn (the page's hash may be changed by the
    previous one, ``"hash:..."``) wait for it and grab the rendered tiles. Returns (tiles as
    [(name, uint8 RGB)], {backend the page chose, whether the browser has a WebGPU adapter,
    the final address}, console errors)."""
    import base64
    import functools
    import http.server
    import io
    import sys
    import threading
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from browser import CHROMIUM, CHROMIUM_ARGS, free_port, require_browser

    require_browser()  # skipped without Chromium; fails under CI / INFINITYGAN_REQUIRE_BROWSER=1
    from playwright.sync_api import sync_playwright

    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda self, *a: None})
    handler = functools.partial(quiet, directory=str(web))
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors, tiles = [], {}
    grab = ("Array.from(document.querySelectorAll('canvas[data-tile]'))"
            ".map(c => [c.dataset.tile, c.toDataURL('image/png')])")
    args = [a for a in CHROMIUM_ARGS if not (extra_args and a == "--disable-gpu")] + list(extra_args)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            try:
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/{url}")
                for cond in want:
                    if cond.startswith("hash:"):
                        page.evaluate(f"location.hash = {cond[5:]!r}")
                        continue
                    page.wait_for_function(cond, timeout=240000)
                    for name, data in page.evaluate(grab):
                        img = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB")
                        tiles.setdefault(name, np.asarray(img))
                backend = page.evaluate("window.explorer.backend")
                adapter = page.evaluate("async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())")
                url = page.url
            finally:
                browser.close()
    finally:
        server.shutdown()
    return list(tiles.items()), {"backend": backend, "adapter": adapter, "url": url}, errors


def assert_servers_tiles(tiles, model, seed: int):
    """Every page tile equals `serve`'s tile of the same key within 2/255 (measured: 1 level)."""
    from infinitygan.render import RenderOptions
    from infinitygan.serve.tiles import TileKey, TileRenderer

    renderer = TileRenderer(model, RenderOptions(device="cpu"), max_zoom=2)
    for name, got in tiles:
        s, z, x, y = (int(v) for v in name.split("/"))
        assert s == seed
        ref = renderer.render([TileKey(s, z, x, y)])[0]
        assert got.shape == ref.shape and np.abs(got.astype(int) - ref.astype(int)).max() <= 2, name


def test_the_static_page_renders_the_servers_tiles_in_the_browser(web, tiny_model):
    """`export --web`, served by a plain static server and opened in headless Chromium without a
    GPU: the page chooses WebAssembly, computes its tiles itself (canvas.js + onnxruntime-web) and
    they equal `serve`'s tiles within 2/255 (measured: at most 1 level), native and zoomed out,
    without a console error."""
    tiles, page, errors = page_tiles(
        web, "#seed=5&x=2000&y=0&z=0",
        ["document.querySelectorAll('canvas[data-tile]').length >= 2",
         "hash:#seed=5&x=2000&y=0&z=1",  # a new hash moves the map; one level out: 2 x 2 tiles' mean
         "document.querySelectorAll('canvas[data-tile^=\"5/1/\"]').length >= 1"], (480, 300))
    assert not errors, errors
    assert page["backend"] == "wasm" and not page["adapter"]
    assert "seed=5" in page["url"]
    names = {name for name, _ in tiles}
    assert {"5/0/7/-1", "5/0/7/0", "5/1/3/-1", "5/1/3/0"} <= names, names  # around x = 2000, y = 0
    assert_servers_tiles(tiles, tiny_model, 5)


def test_the_page_chooses_webgpu_where_the_browser_has_an_adapter(web):
    """With a WebGPU adapter (Chromium's SwiftShader: a GPU emulated on the CPU) the page loads
    the WebGPU build by itself and opens its sessions on WebGPU, without a console error. (The
    tiles it then renders: the slow test below; a SwiftShader tile takes 25-45 s here.)"""
    _, page, errors = page_tiles(web, "#seed=3&x=-7040&y=-128&z=0", ["window.explorer !== undefined"], (64, 64),
                                 WEBGPU_ARGS)
    require_webgpu_adapter(page["adapter"])
    assert not errors, errors
    assert page["backend"] == "webgpu"


@pytest.mark.slow
def test_the_page_runs_on_webgpu_where_the_browser_has_an_adapter(web, tiny_model):
    """With a WebGPU adapter (Chromium's SwiftShader: a GPU emulated on the CPU, so correctness
    here, not speed) the page loads the WebGPU build by itself and its tile equals `serve`'s within
    2/255; `?backend=wasm` forces WebAssembly in the same browser. Slow: 60-70 s (measured: 1 level)."""
    one_tile = "#seed=3&x=-7040&y=-128&z=0"  # the centre of tile (-28, -1): a 64 x 64 view shows only it
    tiles, page, errors = page_tiles(web, one_tile, ["document.querySelectorAll('canvas[data-tile]').length >= 1"],
                                     (64, 64), WEBGPU_ARGS)
    require_webgpu_adapter(page["adapter"])
    assert not errors, errors
    assert page["backend"] == "webgpu"
    assert [name for name, _ in tiles] == ["3/0/-28/-1"]
    assert_servers_tiles(tiles, tiny_model, 3)
    forced, page, errors = page_tiles(web, "?backend=wasm" + one_tile,
                                         ["document.querySelectorAll('canvas[data-tile]').length >= 1"], (64, 64),
                                         WEBGPU_ARGS)
    assert page["backend"] == "wasm" and page["adapter"] and not errors, errors
    assert [name for name, _ in forced] == ["3/0/-28/-1"]
    assert_servers_tiles(forced, tiny_model, 3)


def test_torchscript_export_reproduces_the_engine(tiny_model, tiny_model_file, tmp_path):
    """`export --format torchscript`: the traced files, loaded with torch.jit.load alone, render
    other tile sizes and positions equal to the engine (within float rounding)."""
    import torch

    assert main(["export", "--model", str(tiny_model_file), "--format", "torchscript", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["runtime"] == "torchscript" and m["graphs"]["texture"]["file"] == "texture.pt"
    nets = {k: torch.jit.load(str(tmp_path / f"{k}.pt")) for k in ("mapping", "structure", "texture")}
    synth = tiny_model.synthesizer("cpu")
    for tile, x in ((32, -40), (64, 2 ** 40)):
        region = Region(x, -24, 96, 80)
        canvas = tiny_model.canvas(7)
        tiles = list(synth.planner.tile_plan(region, tile))
        zl, coords, noises = synth._inputs(canvas, tiles)
        zg = canvas.zg().expand(len(tiles), -1)
        with torch.no_grad():
            w = nets["mapping"](zg[:1])
            styles = w[:, None].expand(len(tiles), tiny_model.generator.n_styles, -1)
            rgb = nets["texture"](nets["structure"](zg, zl, coords), styles, *noises).numpy()
        ref = synth.render(canvas, region, tile)
        for t, img in zip(tiles, rgb):
            got = img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0].transpose(1, 2, 0)
            want = ref[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x]
            assert np.abs(got - want).max() < TOLERANCE
