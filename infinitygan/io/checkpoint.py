"""Our model file: one safetensors file (tensors only, no pickle) with the config as JSON metadata.

metadata: {"format": "infinitygan-model", "version": "1", "config": <ModelConfig JSON>, ...}.
Writes are atomic (temporary file + rename).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError
from .images import atomic_path, check_writable

FORMAT = "infinitygan-model"
VERSION = "1"
EXTENSION = ".safetensors"


def save_model_file(path: str | Path, state: dict[str, torch.Tensor], config: ModelConfig,
                    extra: dict[str, str] | None = None) -> Path:
    path = Path(path)
    if path.suffix.lower() != EXTENSION:
        raise UserError(f"a model file must be named *{EXTENSION} (it is a safetensors file), got {path.name}")
    check_writable(path)
    meta = {"format": FORMAT, "version": VERSION, "config": config.to_json()}
    meta.update(extra or {})
    return save_safetensors(path, {k: v.detach().to("cpu").contiguous() for k, v in state.items()}, meta)


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    from safetensors import SafetensorError

    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except PermissionError:
        raise UserError(f"output is not writable: {path}") from None
    except (OSError, SafetensorError) as e:  # a full disk, a vanished folder: the old file stays
        need = sum(t.numel() * t.element_size() for t in tensors.values())
        why = getattr(e, "strerror", None) or str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"could not write {path} ({need / 2**20:.1f} MB): {why}; "
                        "is the disk full? Nothing was replaced") from None
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an infinitygan safetensors file; UserError for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        with open(path, "rb") as fh:
            head = fh.read(9)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise UserError(f"{path} is not an infinitygan model file (a PyTorch pickle: convert the authors' "
                            "checkpoints with `infinitygan convert-official`)") from None
        if len(head) == 9 and head[8:9] == b"{":  # a safetensors header (8-byte length, then JSON)
            raise UserError(f"{path} is truncated or corrupt") from None
        raise UserError(f"{path} is not an infinitygan model file") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is a safetensors file but not an infinitygan model (format={meta.get('format')!r})")
    return meta


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """(state dict, config, metadata) of a model file written by ``save_model_file``."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: corrupt model config ({e})") from None
    try:
        state = load_file(str(path), device=str(device))
    except Exception:  # a header that promises more bytes than the file holds, ...
        raise UserError(f"{path} is truncated or corrupt") from None
    return state, cfg, meta
