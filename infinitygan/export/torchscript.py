"""The generator as three TorchScript files (``export --format torchscript``): mapping.pt,
structure.pt and texture.pt, the same split, inputs and manifest as the ONNX export, for C++
(libtorch) or any PyTorch without this package. Traced (``torch.jit.trace``) on one window and
checked on another of other batch and spatial sizes: the networks' shape arithmetic is traced
as tensor-size operations, so any tile size runs (tests/test_export.py)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..errors import UserError
from .onnx import GRAPHS, _Mapping, _Structure, _texture_module, example_inputs, manifest


def export_torchscript(model, out: str | Path) -> Path:
    from ..render.pipeline import require_tileable

    require_tileable(model, "export")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror or e}") from None
    g = model.generator.eval()
    modules = {"mapping": _Mapping(g), "structure": _Structure(g), "texture": _texture_module(g, 2 * g.cfg.n_up)}
    traced_on, checked_on = example_inputs(g, 5, 6, 2), example_inputs(g, 7, 9, 3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic (checked below)
        for name in GRAPHS:
            traced = torch.jit.trace(modules[name], traced_on[name], check_trace=False)
            if not torch.allclose(traced(*checked_on[name]), modules[name](*checked_on[name]), atol=1e-5):
                raise UserError(f"the traced {name} network does not generalise to other sizes (please report)")
            try:
                torch.jit.save(traced, str(out / f"{name}.pt"))
            except (OSError, RuntimeError) as e:
                raise UserError(f"cannot write {out / (name + '.pt')}: {e}") from None
    m = manifest(model)
    m["format"], m["runtime"] = "infinitygan-export", "torchscript"
    for name in GRAPHS:
        m["graphs"][name]["file"] = f"{name}.pt"
    (out / "manifest.json").write_text(json.dumps(m, indent=1))
    return out
