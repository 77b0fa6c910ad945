"""Fork a run: a NEW run that starts from another run's training checkpoint (``train --fork FILE``).

A fork takes everything a resumption takes from the checkpoint (G, D, G_ema, both Adam states,
the path-length mean, the iteration, the seed, hence the data order and every random input of
the iterations to come) and the run's constants from the checkpoint's own config, changed where
the user says so (``--set lr=0.001``). With no change, the fork's iterations are those the source
run would have made: forking is resuming into another folder. The source run is only read.

Why: a constant that should change part-way (a lower learning rate for the last stretch, R1
weight, EMA half-life) is a new run by the resume rule (a resumed run's config must equal its
config.yaml). The fork records where it came from: ``init_from`` (``path@iteration``) in the
metadata of every checkpoint it writes, and its config.yaml holds the changed constants.

``parse_settings`` turns ``KEY=VALUE`` strings into ``TrainingConfig`` changes (values are
numbers: ``0.001``, ``1e-3``, ``16``, or ``null``); ``fork_state`` reads the checkpoint.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import ModelConfig, TrainingConfig
from ..errors import UserError
from ..io import runs
from ..io.checkpoint import load_model_file

#: training fields that --set may not change: they are the run's bookkeeping, with their own options
_OWN_OPTION = {"iterations": "--iterations", "batch_size": "--batch", "checkpoint_every": "--checkpoint-every",
               "sample_every": "--sample-every", "log_every": "--log-every"}


def parse_settings(items: tuple[str, ...] | list[str]) -> dict[str, object]:
    """``["lr=0.001", "r1_gamma=0.128"]`` -> ``{"lr": 0.001, "r1_gamma": 0.128}`` (training fields).

    UserError (one line) for a malformed item, an unknown field or a field with its own option.
    The values are validated when the config is built (``TrainingConfig.__post_init__``).
    """
    names = {f.name for f in dataclasses.fields(TrainingConfig)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key.startswith("training."):
            key = key[len("training."):]
        if not sep or not key or not raw.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.001")
        if key in _OWN_OPTION:
            raise UserError(f"--set {key}: use {_OWN_OPTION[key]} instead")
        if key not in names:
            raise UserError(f"--set {key}: not a training setting (choose from: "
                            f"{', '.join(sorted(names - set(_OWN_OPTION)))})")
        out[key] = _number(raw.strip(), item)
    return out


def _number(text: str, item: str) -> int | float | None:
    if text.lower() in ("null", "none", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise UserError(f"--set {item!r}: expected a number, got {text!r}")


def with_settings(cfg: ModelConfig, settings: dict[str, object]) -> ModelConfig:
    """``cfg`` with the training fields of ``settings`` changed; UserError for a bad value."""
    if not settings:
        return cfg
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainingConfig)}
    out: dict[str, object] = {}
    for key, value in settings.items():
        base, optional = types[key].replace(" | None", ""), "None" in types[key]
        if value is None and optional:
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"--set {key}={value!r}: expected a number")
        if base == "int":
            if value != int(value):
                raise UserError(f"--set {key}={value!r}: expected a whole number")
            value = int(value)
        out[key] = float(value) if base == "float" else value
    return cfg.with_training(**out)


def fork_state(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(the checkpoint's config, its tensors, its metadata with ``init_from``) of a training checkpoint.

    UserError (one line) for a file that is not one of this package's training checkpoints (a
    generator file, the bundled model, an authors' checkpoint: see ``--init-from``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--fork: no such file: {path}")
    if path.suffix != ".safetensors":
        raise UserError(f"--fork {path}: expected a training checkpoint (RUN/checkpoints/ckpt-*.safetensors); "
                        "an authors' training checkpoint is --init-from")
    state, cfg, meta = load_model_file(path)
    if not runs.is_training_checkpoint(meta):
        raise UserError(f"--fork {path}: a generator file, not a training checkpoint (no discriminator or "
                        "optimizer state): fork from RUN/checkpoints/ckpt-*.safetensors")
    meta = dict(meta)
    meta["init_from"] = f"{path}@{meta.get('iteration', '?')}"
    return cfg, state, meta
