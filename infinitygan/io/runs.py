"""The training run directory and its checkpoint format: the one definition core and training share.

Layout of a run directory::

    RUN/config.yaml                              the resolved ModelConfig (YAML)
    RUN/checkpoints/ckpt-00001000.safetensors    training checkpoints (the newest few are kept)
    RUN/logs/                                    TensorBoard events
    RUN/samples/iter-00001000.png                sample grids of G_ema

A training checkpoint is a model file (``io.checkpoint``: safetensors + JSON config, written
atomically) whose metadata has ``kind`` = ``KIND`` and whose tensors are prefixed by the network
they belong to: ``g.`` (G), ``d.`` (D), ``g_ema.`` (the EMA of G, what ``load_model`` uses),
``g_optim.{i}.{exp_avg,exp_avg_sq,step}`` / ``d_optim.…`` (Adam state of parameter i) and
``pl_mean`` (the running mean of the path lengths). Further metadata (strings): ``iteration``,
``images_seen``, ``seed``, ``world_size``, ``progress`` (JSON).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError
from .checkpoint import load_model_file
from .resources import TooLarge

KIND = "training-checkpoint"
CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
SAMPLES = "samples"
G, D, G_EMA, G_OPTIM, D_OPTIM, PL_MEAN = "g.", "d.", "g_ema.", "g_optim.", "d_optim.", "pl_mean"
_CKPT_NAME = re.compile(r"^ckpt-(\d{8,})\.safetensors$")


def checkpoint_dir(run: str | Path) -> Path:
    return Path(run) / CHECKPOINTS


def checkpoint_path(run: str | Path, iteration: int) -> Path:
    return checkpoint_dir(run) / f"ckpt-{int(iteration):08d}.safetensors"


def sample_path(run: str | Path, iteration: int) -> Path:
    return Path(run) / SAMPLES / f"iter-{int(iteration):08d}.png"


def checkpoint_iteration(path: str | Path) -> int:
    """The iteration in a checkpoint's file name (``ckpt-00001000.safetensors`` -> 1000)."""
    m = _CKPT_NAME.match(Path(path).name)
    if not m:
        raise ValueError(f"not a checkpoint name: {Path(path).name}")
    return int(m.group(1))


def list_checkpoints(run: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first (temporary ``.part`` files and other names ignored)."""
    d = checkpoint_dir(run)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT_NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{k[len(prefix):]: v}`` for the keys starting with ``prefix``."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def is_training_checkpoint(meta: dict[str, str]) -> bool:
    return meta.get("kind") == KIND


def generator_state(state: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, torch.Tensor]:
    """The generator a model file holds: G_ema of a training checkpoint, else the whole state."""
    return sub_state(state, G_EMA) if is_training_checkpoint(meta) else state


def load_newest_checkpoint(run: str | Path, device: str | torch.device = "cpu"
                           ) -> tuple[Path, dict[str, torch.Tensor], ModelConfig, dict[str, str]]:
    """(path, tensors, config, metadata) of the newest READABLE checkpoint of a run.

    A newest checkpoint that cannot be read (truncated, corrupt) is reported in one warning line
    and the next older one is used. UserError when the run has no checkpoint or none is readable.
    """
    ckpts = list_checkpoints(run)
    if not ckpts:
        raise UserError(f"{run} holds no checkpoint (expected {checkpoint_dir(run)}/ckpt-*.safetensors)")
    bad: list[Path] = []
    why: list[str] = []  # what kept each unreadable one out, once
    for path in reversed(ckpts):
        try:
            state, cfg, meta = load_model_file(path, device=device)
        except TooLarge:
            raise  # an older checkpoint of the same run is no smaller
        except Exception as e:  # UserError from the header check, safetensors errors on truncated data
            bad.append(path)
            reason = getattr(e, "reason", "truncated or corrupt")
            if reason not in why:
                why.append(reason)
            continue
        if not is_training_checkpoint(meta):
            bad.append(path)
            if "truncated or corrupt" not in why:
                why.append("truncated or corrupt")
            continue
        if bad:
            names = ", ".join(p.name for p in bad)
            warnings.warn(f"checkpoint {names} of {run} is unreadable ({', '.join(why)}); "
                          f"using {path.name}", stacklevel=2)
        return path, state, cfg, meta
    raise UserError(f"no readable checkpoint in {checkpoint_dir(run)} ({len(bad)} {' or '.join(why)})")


def load_model_or_run(path: str | Path, device: str | torch.device = "cpu"
                      ) -> tuple[Path, dict[str, torch.Tensor], ModelConfig, dict[str, str]]:
    """(file read, tensors, config, metadata) of a model file, a checkpoint or a run directory
    (its newest readable checkpoint)."""
    path = Path(path)
    if path.is_dir():
        return load_newest_checkpoint(path, device)
    state, cfg, meta = load_model_file(path, device=device)
    return path, state, cfg, meta
