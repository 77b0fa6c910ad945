"""A campaign's compact resume state: a training checkpoint with only what resuming needs.

A training checkpoint (``io.runs``) holds G, D, G_ema, both Adam states (``exp_avg``,
``exp_avg_sq``, ``step`` per parameter) and the path-length mean. The compact state drops what
carries no information and, by choice, narrows what carries little:

- ``exp_avg`` (Adam's first moment) is dropped: the optimizers run with beta1 = 0 (StyleGAN2's
  Adam, ``training.nets.make_adam``), so each step overwrites it with the step's gradient before
  using it (``lerp(m, g, 1) == g`` exactly). Restored as zeros, the next steps are bit for bit
  those of the uninterrupted run.
- ``exp_avg_sq`` (the second moment) is kept in ``moments`` precision: ``fp32`` (exact: the
  resumed run equals the uninterrupted one bit for bit) or ``bf16`` (half the bytes; its relative
  error 2^-9 scales each parameter's step by at most 1 +- 2^-10 and fades with beta2 = 0.99 per
  step: after 500 steps the stored value weighs 0.7%).
- G, D, G_ema, step counts and the path-length mean stay as they are (float32).

The file is a model file (``io.checkpoint``: safetensors, config as JSON, written atomically) with
``kind`` = ``KIND``; the checkpoint's own metadata (iteration, images_seen, seed, world_size,
progress, init_from) is carried over, plus ``moments``, ``train_seconds`` and ``cpu_seconds``
(the campaign's training wall time and CPU time so far). ``expand`` turns it back into a training checkpoint that
``train --resume`` continues.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError
from ..io import runs
from ..io.checkpoint import load_model_file, save_model_file

KIND = "campaign-state"
MOMENTS = ("bf16", "fp32")
_DTYPE = {"bf16": torch.bfloat16, "fp32": torch.float32}
#: metadata of a model file written by ``save_model_file`` itself (not carried over)
_OWN = ("format", "version", "config", "kind")
_OPTIM = (runs.G_OPTIM, runs.D_OPTIM)


def _is_first_moment(key: str) -> bool:
    return key.startswith(_OPTIM) and key.endswith(".exp_avg")


def _is_second_moment(key: str) -> bool:
    return key.startswith(_OPTIM) and key.endswith(".exp_avg_sq")


def compact(tensors: dict[str, torch.Tensor], moments: str = "bf16") -> dict[str, torch.Tensor]:
    """A training checkpoint's tensors -> the compact state's (first moments dropped, second
    moments in ``moments`` precision, everything else unchanged)."""
    if moments not in MOMENTS:
        raise UserError(f"moments must be one of {', '.join(MOMENTS)}, got {moments!r}")
    out = {}
    for k, v in tensors.items():
        if _is_first_moment(k):
            continue
        out[k] = v.to(_DTYPE[moments]) if _is_second_moment(k) else v
    return out


def expand(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compact state's tensors -> a training checkpoint's (zero first moments, float32 second
    moments)."""
    out = {}
    for k, v in tensors.items():
        if _is_second_moment(k):
            v = v.to(torch.float32)
            out[k[: -len("_sq")]] = torch.zeros_like(v)
        out[k] = v
    return out


def save_state(path: str | Path, checkpoint: str | Path, moments: str = "bf16", train_seconds: float = 0.0,
               cpu_seconds: float = 0.0) -> dict:
    """Write the compact state of training checkpoint ``checkpoint`` to ``path`` (atomically);
    its metadata."""
    tensors, cfg, meta = load_model_file(checkpoint)
    if not runs.is_training_checkpoint(meta):
        raise UserError(f"{checkpoint} is not a training checkpoint (kind={meta.get('kind')!r})")
    extra = {k: v for k, v in meta.items() if k not in _OWN}
    extra.update({"kind": KIND, "moments": moments, "train_seconds": f"{float(train_seconds):.1f}",
                  "cpu_seconds": f"{float(cpu_seconds):.1f}"})
    save_model_file(path, compact(tensors, moments), cfg, extra)
    return extra


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, str]]:
    """(tensors, config, metadata) of a compact state file; UserError for any other file."""
    tensors, cfg, meta = load_model_file(path)
    if meta.get("kind") != KIND:
        raise UserError(f"{path} is not a campaign state (kind={meta.get('kind')!r})")
    if "iteration" not in meta:
        raise UserError(f"{path}: campaign state without an iteration (corrupt)")
    return tensors, cfg, meta


def restore_checkpoint(state_path: str | Path, run: str | Path) -> Path:
    """Write the state as the training checkpoint ``RUN/checkpoints/ckpt-N.safetensors`` (and
    RUN/config.yaml) so that ``train --out RUN --resume`` continues it; the checkpoint's path."""
    from ..training import state as S

    tensors, cfg, meta = read_state(state_path)
    extra = {k: v for k, v in meta.items() if k not in _OWN + ("moments", "train_seconds", "cpu_seconds")}
    run = Path(run)
    S.check_writable_dir(run)
    run.mkdir(parents=True, exist_ok=True)
    S.write_config(run, cfg)
    return S.save_checkpoint(run, int(meta["iteration"]), expand(tensors), cfg, extra)
