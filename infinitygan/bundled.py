"""The bundled model shipped in the package (the ``tiny`` preset trained on procedural landscapes)."""
from __future__ import annotations

from pathlib import Path

from .errors import UserError

BUNDLED_MODEL = Path(__file__).parent / "assets" / "landscapes-tiny.safetensors"


def bundled_model_path() -> Path:
    if not BUNDLED_MODEL.is_file():
        raise UserError("no bundled model in this installation: pass --model (see `infinitygan init`)")
    return BUNDLED_MODEL
