"""Training state on disk: checkpoint packing, the resume checks, the run's config file.

The run-directory layout and the checkpoint format (file names, tensor prefixes, ``kind``) are
defined once, in ``infinitygan.io.runs``. Checkpoints are written atomically (temporary ``.part``
file + rename, via ``save_model_file``): a ``kill -9`` at any moment leaves either the previous
newest checkpoint or the new one, never a truncated file under a final name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from ..config import ModelConfig
from ..errors import UserError
from ..io import runs
from ..io.checkpoint import save_model_file
from ..io.images import atomic_path

if TYPE_CHECKING:
    from .nets import Nets

#: checkpoints kept in RUN/checkpoints (the newest ones)
KEEP = 3
#: training fields that may change between a run and its resumption (they do not change the
#: trajectory of the weights)
BOOKKEEPING = ("iterations", "checkpoint_every", "sample_every", "log_every")


def remove_stray_parts(run: Path) -> None:
    """Delete temporary files left by an interrupted checkpoint write."""
    d = runs.checkpoint_dir(run)
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
    path = Path(run) / runs.CONFIG_FILE
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
    path = Path(run) / runs.CONFIG_FILE
    if path.is_file():
        stored = _read_config(path)
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
    path = Path(run) / runs.CONFIG_FILE
    if not path.is_file():
        if not runs.list_checkpoints(run):
            raise UserError(f"{run} has no config.yaml: pass --preset or --config")
        return runs.load_newest_checkpoint(run)[2]
    return _read_config(path)


def _read_config(path: Path) -> ModelConfig:
    """A run's config.yaml (alias bombs, malformed sections: UserError naming the file)."""
    from ..io import safe_yaml

    try:
        return ModelConfig.from_dict(safe_yaml.load(path.read_text()) or {})
    except UserError as e:
        raise UserError(f"cannot read {path}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot read {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


# ------------------------------------------------------------------------- optimizers
def optimizer_tensors(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], prefix: str
                      ) -> dict[str, torch.Tensor]:
    """Adam state flattened to ``{prefix}{i}.{exp_avg,exp_avg_sq,step}`` (i = parameter index)."""
    out = {}
    for i, p in enumerate(params):
        st = opt.state.get(p)
        if not st:
            continue
        for k in ("exp_avg", "exp_avg_sq", "step"):
            v = st[k]
            v = v if torch.is_tensor(v) else torch.tensor(float(v))
            out[f"{prefix}{i}.{k}"] = v.detach().clone()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                           tensors: dict[str, torch.Tensor], prefix: str) -> None:
    state = {}
    for i, p in enumerate(params):
        keys = [f"{prefix}{i}.{k}" for k in ("exp_avg", "exp_avg_sq", "step")]
        if all(k in tensors for k in keys):
            state[i] = {"exp_avg": tensors[keys[0]], "exp_avg_sq": tensors[keys[1]],
                        "step": tensors[keys[2]].to(torch.float32).cpu()}
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


# ------------------------------------------------------------------------ checkpoints
@dataclass
class Progress:
    """Where a run is: iterations done, the path-length running mean, skipped (non-finite) steps."""

    iteration: int = 0
    pl_mean: float = 0.0
    nan_skips: int = 0
    nan_streak: int = 0
    skipped: dict = field(default_factory=lambda: {"d": 0, "r1": 0, "g": 0, "pl": 0})


def checkpoint_tensors(nets: "Nets", prog: Progress) -> dict[str, torch.Tensor]:
    """Everything a resumption needs, as prefixed tensors (``io.runs`` names the prefixes)."""
    out = {}
    for prefix, m in ((runs.G, nets.G), (runs.D, nets.D), (runs.G_EMA, nets.G_ema)):
        out.update({f"{prefix}{k}": v for k, v in m.state_dict().items()})
    out.update(optimizer_tensors(nets.g_optim, nets.g_params, runs.G_OPTIM))
    out.update(optimizer_tensors(nets.d_optim, nets.d_params, runs.D_OPTIM))
    out[runs.PL_MEAN] = torch.tensor(prog.pl_mean, dtype=torch.float32)
    return out


def restore(nets: "Nets", tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Progress:
    """Load a checkpoint's weights and Adam state into ``nets``; its progress."""
    nets.G.load_state_dict(runs.sub_state(tensors, runs.G))
    nets.D.load_state_dict(runs.sub_state(tensors, runs.D))
    nets.G_ema.load_state_dict(runs.sub_state(tensors, runs.G_EMA))
    load_optimizer_tensors(nets.g_optim, nets.g_params, tensors, runs.G_OPTIM)
    load_optimizer_tensors(nets.d_optim, nets.d_params, tensors, runs.D_OPTIM)
    info = json.loads(meta.get("progress", "{}"))
    prog = Progress(iteration=int(meta["iteration"]), nan_skips=int(info.get("nan_skips", 0)))
    prog.pl_mean = float(tensors[runs.PL_MEAN].item()) if runs.PL_MEAN in tensors else 0.0
    prog.skipped.update(info.get("skipped", {}))
    return prog


def save_checkpoint(run: Path, iteration: int, tensors: dict[str, torch.Tensor], cfg: ModelConfig,
                    meta: dict[str, Any], keep: int = KEEP, keep_every: int | None = None) -> Path:
    """Write RUN/checkpoints/ckpt-{iteration:08d}.safetensors atomically; keep the newest ``keep``,
    and besides them every checkpoint whose iteration is a multiple of ``keep_every``."""
    runs.checkpoint_dir(run).mkdir(parents=True, exist_ok=True)
    extra = {"kind": runs.KIND}
    extra.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    path = save_model_file(runs.checkpoint_path(run, iteration), tensors, cfg, extra)
    for old in runs.list_checkpoints(run)[:-keep]:
        if keep_every and runs.checkpoint_iteration(old) % keep_every == 0:
            continue
        try:
            old.unlink()
        except OSError:
            pass
    return path
