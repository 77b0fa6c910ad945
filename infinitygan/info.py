"""``infinitygan info``: a JSON summary of a model file, a training checkpoint or a run directory."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError


def _param_count(state, prefix: str) -> int:
    return int(sum(v.numel() for k, v in state.items() if k.startswith(prefix)))


def describe(target: Path) -> dict:
    from .bundled import newest_model_in_run
    from .io.checkpoint import load_model_file

    target = Path(target)
    if not target.exists():
        raise UserError(f"not found: {target}")
    run_dir = None
    if target.is_dir():
        run_dir = target
        target = newest_model_in_run(target)
    state, cfg, meta = load_model_file(target)
    out = {
        "path": str(target),
        "kind": meta.get("kind", "model"),
        "preset": cfg.name,
        "config": cfg.to_dict(),
    }
    if meta.get("kind") == "training-checkpoint":
        out["parameters"] = {
            "generator": _param_count(state, "g."),
            "discriminator": _param_count(state, "d."),
        }
        out["iteration"] = int(meta.get("iteration", 0))
        out["images_seen"] = int(meta.get("images_seen", 0))
        if run_dir is not None:
            out["run"] = str(run_dir)
        if "progress" in meta:
            out["progress"] = json.loads(meta["progress"])
    else:
        out["parameters"] = {"generator": _param_count(state, "")}
    return out
