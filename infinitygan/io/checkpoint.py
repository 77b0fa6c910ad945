"""Our model file: one safetensors file (tensors only, no pickle) with the config as JSON metadata.

metadata: {"format": "infinitygan-model", "version": "1", "config": <ModelConfig JSON>, ...}.
Writes are atomic (temporary file + rename).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError, shown
from .images import atomic_path, check_input_file, check_writable

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


class Unreadable(UserError):
    """A file that exists but cannot be read as what it should be; ``reason``: "permission
    denied" or "truncated or corrupt"."""

    def __init__(self, path: Path, reason: str):
        self.reason = reason
        super().__init__(f"cannot read {path}: permission denied" if reason == "permission denied"
                         else f"{path} is {reason}")


def _is_pickle(head: bytes) -> bool:
    """A PyTorch checkpoint: a zip archive (torch.save) or a bare pickle (protocol 2 to 5)."""
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an infinitygan safetensors file; UserError for anything else."""
    from safetensors import safe_open

    path = check_input_file(path, "model file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except PermissionError:
        raise Unreadable(path, "permission denied") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        if len(head) == 9 and head[8:9] == b"{":  # a safetensors header (8-byte length, then JSON) cut
            # short or damaged; checked first: a length whose low byte is 0x80 reads like a pickle's start
            raise Unreadable(path, "truncated or corrupt") from None
        if _is_pickle(head):
            raise UserError(f"{path} is not an infinitygan model file (a PyTorch pickle: convert the authors' "
                            "checkpoints with `infinitygan convert-official`)") from None
        raise UserError(f"{path} is not an infinitygan model file") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is a safetensors file but not an infinitygan model (format={shown(meta.get('format'))})")
    return meta


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """(state dict, config, metadata) of a model file written by ``save_model_file``."""
    from safetensors.torch import load_file

    from .resources import check_memory

    meta = read_metadata(path)
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, RecursionError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"{path}: corrupt model config ({why})") from None
    check_memory(Path(path).stat().st_size, f"reading {path}")
    try:
        state = load_file(str(path), device=str(device))
    except Exception:  # a header that promises more bytes than the file holds, ...
        raise Unreadable(path, "truncated or corrupt") from None
    return state, cfg, meta


def load_pickled_tensors(path: str | Path, allowed_globals: list | None = None):
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, containers and numbers (plus
    ``allowed_globals``) only, so a file holding code is refused (torch's exception propagates).
    torch's warnings (e.g. on the pickle protocol) are silenced: a refusal stays one line."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.serialization.safe_globals(list(allowed_globals or [])):
            return torch.load(str(path), map_location="cpu", weights_only=True)
