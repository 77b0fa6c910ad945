"""Training state on disk: checkpoints of a run directory and the resume checks.

Run directory layout::

    RUN/config.yaml                      the resolved ModelConfig (yaml.safe_dump(cfg.to_dict()))
    RUN/checkpoints/ckpt-00001000.safetensors   the newest 3 are kept
    RUN/logs/                            TensorBoard events
    RUN/samples/iter-00001000.png        sample grids of G_ema

A checkpoint is one safetensors file written atomically (temporary ``.part`` file + rename, via
``save_model_file``): a ``kill -9`` at any moment leaves either the previous newest checkpoint or
the new one, never a truncated file under a final name. Tensors:

* ``g.*``, ``d.*``, ``g_ema.*``: state dicts of G, D and the EMA of G (``g_ema.*`` is what
  ``infinitygan.api.load_model`` takes from a training checkpoint);
* ``g_optim.{i}.{exp_avg,exp_avg_sq,step}``, ``d_optim.{i}.…``: Adam state of parameter ``i``
  (index in ``module.parameters()`` order);
* ``pl_mean``: the running mean of the path lengths.

Metadata (strings): format/config (from ``save_model_file``), ``kind`` = "training-checkpoint",
``iteration``, ``images_seen``, ``seed``, ``world_size``, ``progress`` (JSON: non-finite step
counts, epoch, the last logged losses, ...).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import ModelConfig
from ..errors import UserError
from ..io.checkpoint import load_model_file, save_model_file
from ..io.images import atomic_path

KIND = "training-checkpoint"
KEEP = 3
CKPT_NAME = re.compile(r"^ckpt-(\d{8,})\.safetensors$")
#: training fields that may change between a run and its resumption (they do not change the
#: trajectory of the weights)
BOOKKEEPING = ("iterations", "checkpoint_every", "sample_every", "log_every")


# ------------------------------------------------------------------------------ paths
def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def checkpoint_path(run: Path, iteration: int) -> Path:
    return checkpoint_dir(run) / f"ckpt-{int(iteration):08d}.safetensors"


def list_checkpoints(run: Path) -> list[Path]:
    """Checkpoints of a run, oldest first (stray ``*.part`` files and other names ignored)."""
    d = checkpoint_dir(run)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def newest_checkpoint(run: Path) -> Path | None:
    ckpts = list_checkpoints(run)
    return ckpts[-1] if ckpts else None


def remove_stray_parts(run: Path) -> None:
    """Delete temporary files left by an interrupted checkpoint write."""
    d = checkpoint_dir(run)
    if d.is_dir():
        for p in d.glob(".*.part"):
            try:
                p.unlink()
            except OSError:
                pass


def check_writable_dir(path: Path) -> None:
    """UserError unless ``path`` is (or can be created as) a writable directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"run directory is not a directory: {path}")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"run directory cannot be created ({probe} is not a directory): {path}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"run directory is not writable: {path}")


# ----------------------------------------------------------------------------- config
def write_config(run: Path, cfg: ModelConfig) -> Path:
    path = Path(run) / "config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def trajectory_fields(cfg: ModelConfig) -> dict[str, Any]:
    """Flattened config without the bookkeeping fields (what must match on resume)."""
    flat = _flatten(cfg.to_dict())
    for k in BOOKKEEPING:
        flat.pop(f"training.{k}", None)
    return flat


def check_resume_config(run: Path, cfg: ModelConfig, stored: ModelConfig | None = None) -> None:
    """UserError when ``cfg`` differs from the run's config (RUN/config.yaml, else ``stored``)."""
    path = Path(run) / "config.yaml"
    if path.is_file():
        try:
            stored = ModelConfig.from_dict(yaml.safe_load(path.read_text()) or {})
        except (yaml.YAMLError, TypeError) as e:
            raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if stored is None:
        return
    a, b = trajectory_fields(stored), trajectory_fields(cfg)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        k = diff[0]
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        raise UserError(f"cannot resume {run}: config differs from the run's config.yaml: "
                        f"{k} = {b.get(k)!r}, the run has {a.get(k)!r}{more}")


def load_run_config(run: Path) -> ModelConfig:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        ckpt = newest_checkpoint(run)
        if ckpt is None:
            raise UserError(f"{run} has no config.yaml: pass --preset or --config")
        return load_model_file(ckpt)[1]
    try:
        return ModelConfig.from_dict(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, TypeError) as e:
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


# ------------------------------------------------------------------------- optimizers
def optimizer_tensors(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], prefix: str
                      ) -> dict[str, torch.Tensor]:
    """Adam state flattened to ``{prefix}.{i}.{exp_avg,exp_avg_sq,step}`` (i = parameter index)."""
    out = {}
    for i, p in enumerate(params):
        st = opt.state.get(p)
        if not st:
            continue
        for k in ("exp_avg", "exp_avg_sq", "step"):
            v = st[k]
            v = v if torch.is_tensor(v) else torch.tensor(float(v))
            out[f"{prefix}.{i}.{k}"] = v.detach().clone()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                           tensors: dict[str, torch.Tensor], prefix: str) -> None:
    state = {}
    for i, p in enumerate(params):
        keys = [f"{prefix}.{i}.{k}" for k in ("exp_avg", "exp_avg_sq", "step")]
        if all(k in tensors for k in keys):
            state[i] = {"exp_avg": tensors[keys[0]], "exp_avg_sq": tensors[keys[1]],
                        "step": tensors[keys[2]].to(torch.float32).cpu()}
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


# ------------------------------------------------------------------------ checkpoints
def save_checkpoint(run: Path, iteration: int, tensors: dict[str, torch.Tensor], cfg: ModelConfig,
                    meta: dict[str, Any], keep: int = KEEP) -> Path:
    """Write RUN/checkpoints/ckpt-{iteration:08d}.safetensors atomically; keep the newest ``keep``."""
    d = checkpoint_dir(run)
    d.mkdir(parents=True, exist_ok=True)
    extra = {"kind": KIND}
    extra.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    path = save_model_file(checkpoint_path(run, iteration), tensors, cfg, extra)
    for old in list_checkpoints(run)[:-keep]:
        try:
            old.unlink()
        except OSError:
            pass
    return path


def load_checkpoint(path: Path, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, str]]:
    state, cfg, meta = load_model_file(path, device=device)
    if meta.get("kind") != KIND:
        raise UserError(f"{path} is not a training checkpoint")
    return state, cfg, meta


def sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{k[len(prefix):]: v}`` for the keys starting with ``prefix``."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}
