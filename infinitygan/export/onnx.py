"""The generator as three ONNX graphs and a manifest.

    mapping.onnx    zg (B, zg_dim)                                   -> w (B, style_dim)
    structure.onnx  zg (B, zg_dim), zl (B, zl_dim, h + 2m, w + 2m),
                    coords (B, C, h + 2m, w + 2m)                      -> zs (B, gs_channels, h, w)
    texture.onnx    zs (B, gs_channels, h, w), styles (B, n_styles, style_dim),
                    noise_0 .. noise_{2K-1} (B, 1, h_j, w_j)           -> rgb (B, 3, 2^K h - s, 2^K w - s)

m = the GS margin (12 cells for 4 layers of 7x7), K = upsampling stages, s = 5 (2^K - 1) pixels
lost to the padding-free convolutions, h_j / w_j the noise sizes of GT conv j (``noise_sizes``
in the manifest). Batch and spatial sizes are dynamic, so any tile size runs through the same
files; a tile's inputs are functions of its position on the canvas exactly as in the engine
(``Synthesizer``), and the manifest records what another program needs to place them.

Exported with torch.export (``torch.onnx.export(..., dynamo=True)``; the TorchScript exporter
cannot express the per-sample modulated convolutions with a dynamic batch).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch

from ..errors import UserError

#: version of the export layout (files, input names, manifest keys)
FORMAT_VERSION = 1
GRAPHS = ("mapping", "structure", "texture")


class _Mapping(torch.nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, zg):
        return self.g.mapping(zg)


class _Structure(torch.nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, zg, zl, coords):
        return self.g.structure(zg, zl, coords)


def _texture_module(g, n_noises: int) -> torch.nn.Module:
    """GT with its noise maps as separate named inputs (torch.export needs a fixed signature)."""
    names = [f"noise_{j}" for j in range(n_noises)]
    src = (f"def forward(self, zs, styles, {', '.join(names)}):\n"
           f"    return self.g.texture(zs, styles, [{', '.join(names)}])\n")
    scope: dict = {}
    exec(src, scope)  # noqa: S102 - a fixed signature built from our own names, no user input

    class _Texture(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = g

        forward = scope["forward"]

    return _Texture()


def example_inputs(generator, rows: int = 5, cols: int = 6, batch: int = 2) -> dict[str, tuple]:
    """Inputs of each graph for a window of rows x cols zS cells (random values; shapes matter)."""
    cfg, geo = generator.cfg, generator.geometry
    m = geo.gs_margin
    g = torch.Generator().manual_seed(0)
    zg = torch.randn(batch, cfg.zg_dim, generator=g)
    zl = torch.randn(batch, cfg.zl_dim, rows + 2 * m, cols + 2 * m, generator=g)
    coords = torch.randn(batch, cfg.coords.channels, rows + 2 * m, cols + 2 * m, generator=g)
    zs = torch.randn(batch, cfg.gs_channels, rows, cols, generator=g)
    styles = torch.randn(batch, generator.n_styles, cfg.style_dim, generator=g)
    noises = [torch.randn(batch, 1, h, w, generator=g) for h, w in zip(geo.ts_sizes(rows), geo.ts_sizes(cols))]
    return {"mapping": (zg,), "structure": (zg, zl, coords), "texture": (zs, styles, *noises)}


def input_names(generator) -> dict[str, list[str]]:
    n = 2 * generator.cfg.n_up
    return {"mapping": ["zg"], "structure": ["zg", "zl", "coords"],
            "texture": ["zs", "styles", *[f"noise_{j}" for j in range(n)]]}


OUTPUT_NAMES = {"mapping": ["w"], "structure": ["zs"], "texture": ["rgb"]}


def model_fingerprint(generator) -> str:
    """sha256 of the generator's tensors (names, shapes, bytes): the manifest ties the files to it."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        t = v.detach().to("cpu", torch.float32).contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def manifest(model) -> dict:
    """What another program needs besides the graphs: sizes, geometry, coordinates, tile rules."""
    from .. import __version__

    g, cfg = model.generator, model.config.generator
    geo = g.geometry
    return {
        "format": "infinitygan-export", "runtime": "onnx", "format_version": FORMAT_VERSION,
        "infinitygan_version": __version__,
        "model": model.config.name, "model_sha256": model_fingerprint(g),
        "graphs": {k: {"file": f"{k}.onnx", "inputs": v, "outputs": OUTPUT_NAMES[k]}
                   for k, v in input_names(g).items()},
        "latents": {"zg_dim": cfg.zg_dim, "zl_dim": cfg.zl_dim, "style_dim": cfg.style_dim,
                    "n_styles": g.n_styles},
        "geometry": {"lattice": geo.lattice, "n_up": cfg.n_up, "gs_layers": cfg.gs_layers, "gs_kernel": cfg.gs_kernel,
                     "gs_margin": geo.gs_margin, "shrink": geo.shrink,
                     "tile_output": "lattice * cells - shrink pixels for a window of `cells` zS cells",
                     "noise_sizes": "GT conv j of a window of n cells: n_j = 2 n_{j-1} - 1 (upsampling convs), "
                                    "n_j - 2 (the others, kernel 3); see infinitygan.geometry.Geometry.ts_sizes",
                     "example_noise_sizes_11_cells": geo.ts_sizes(11)},
        "coordinates": {"system": cfg.coords.system, "channels": cfg.coords.channels,
                        "vertical_step": cfg.coords.vertical_step, "period_cells": cfg.coords.period},
        "tile_rules": ("a tile of the infinite image is computed from the zS window of its cells; GS reads zl and "
                       "coords over the window plus gs_margin cells on every side; every input is a pure "
                       "function of (seed, position) on the canvas (infinitygan.latents), so tiles computed "
                       "anywhere agree pixel for pixel"),
    }


@contextlib.contextmanager
def _quiet():
    """The exporter's progress prints and warnings, silenced (one line per command is ours)."""
    import io
    import logging
    import warnings

    previous = {n: logging.getLogger(n).level for n in ("torch.onnx", "torch._export", "torch.export")}
    for n in previous:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in previous.items():
            logging.getLogger(n).setLevel(level)


#: largest difference between a graph run by onnxruntime and the engine's module in the export
#: check, relative to the module output's largest magnitude when above 1 (float32 through two
#: runtimes: measured at most 5.5e-6 on the tiny model, whose outputs reach 8.4)
CHECK_TOLERANCE = 1e-4


def _modules(g) -> dict[str, torch.nn.Module]:
    return {"mapping": _Mapping(g), "structure": _Structure(g), "texture": _texture_module(g, 2 * g.cfg.n_up)}


def check_export(model, folder: str | Path) -> None:
    """Check the graphs in ``folder`` against ``model``: each passes ``onnx.checker``, and each,
    run by onnxruntime on a window of another batch and spatial size than the one it was traced
    on (1 x 6 x 7 cells against 2 x 5 x 6), equals the engine's module within CHECK_TOLERANCE.
    UserError (one line) otherwise, or when onnx / onnxruntime are not installed."""
    import numpy as np

    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking the export runs it in onnxruntime: pip install 'infinitygan[export]' "
                        "(or export_onnx(..., check=False))") from None
    folder = Path(folder)
    g = model.generator.eval()
    inputs, names, modules = example_inputs(g, rows=6, cols=7, batch=1), input_names(g), _modules(g)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: the check says what failed in its own line
    for name in GRAPHS:
        path = folder / f"{name}.onnx"
        try:
            onnx.checker.check_model(str(path))
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            got = sess.run(None, {n: a.numpy() for n, a in zip(names[name], inputs[name])})[0]
        except Exception as e:  # noqa: BLE001 - onnx / onnxruntime raise their own types for a bad file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"the exported {path.name} fails its check: {first}") from None
        with torch.no_grad():
            ref = modules[name](*inputs[name]).numpy()
        if got.shape != ref.shape:
            raise UserError(f"the exported {path.name} gives shape {got.shape}, the engine {ref.shape} (please report)")
        err = float(np.abs(got - ref).max()) if np.isfinite(got).all() else float("inf")
        scale = max(1.0, float(np.abs(ref).max()))
        if not err <= CHECK_TOLERANCE * scale:
            raise UserError(f"the exported {path.name} differs from the engine by {err:.3g} "
                            f"(allowed {CHECK_TOLERANCE * scale:.3g}; please report)")


def export_onnx(model, out: str | Path, check: bool = True) -> Path:
    """Write mapping.onnx, structure.onnx, texture.onnx and manifest.json to the folder ``out``.

    ``check``: verify the written graphs before the manifest is written (``check_export``:
    onnx.checker, and onnxruntime against the engine on a window of other sizes); a graph that
    fails is removed with the others and the export raises UserError."""
    from ..render.pipeline import require_tileable

    require_tileable(model, "export")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder: {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror or e}") from None
    try:
        import onnxscript  # noqa: F401 - the exporter's own dependency
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxscript: pip install 'infinitygan[export]'") from None
    g = model.generator.eval()
    inputs = example_inputs(g)
    names = input_names(g)
    modules = _modules(g)
    auto = torch.export.Dim.AUTO
    for name in GRAPHS:
        args = inputs[name]
        dyn = tuple({0: auto, **({2: auto, 3: auto} if a.dim() == 4 else {})} for a in args)
        path = out / f"{name}.onnx"
        with torch.no_grad(), _quiet():
            torch.onnx.export(modules[name], args, str(path), dynamo=True, dynamic_shapes=dyn,
                              input_names=names[name], output_names=OUTPUT_NAMES[name], verbose=False,
                              external_data=False)
    if check:
        try:
            check_export(model, out)
        except UserError:
            for name in GRAPHS:  # (this call's files: a graph that does not compute the engine's tiles)
                (out / f"{name}.onnx").unlink(missing_ok=True)
            raise
    (out / "manifest.json").write_text(json.dumps(manifest(model), indent=1))
    return out
