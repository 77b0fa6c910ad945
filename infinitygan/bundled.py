"""Where models are found: the bundled model shipped in the package, and run directories."""
from __future__ import annotations

from pathlib import Path

from .errors import UserError

ASSETS = Path(__file__).parent / "assets"
BUNDLED_MODEL = ASSETS / "landscapes-tiny.safetensors"


def bundled_model_path() -> Path:
    if not BUNDLED_MODEL.is_file():
        raise UserError("no bundled model in this installation: pass --model (see `infinitygan init`)")
    return BUNDLED_MODEL


def newest_model_in_run(run: Path) -> Path:
    """The newest checkpoint of a training run directory (its G_ema is used)."""
    ckpts = sorted((run / "checkpoints").glob("*.safetensors"))
    if not ckpts:
        raise UserError(f"{run} holds no checkpoint (expected {run}/checkpoints/*.safetensors)")
    return ckpts[-1]
