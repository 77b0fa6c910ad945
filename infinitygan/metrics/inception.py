"""The standard Inception-v3 features of FID and KID (pool3, 2048-d), through torch-fidelity.

The network is torch-fidelity's ``FeatureExtractorInceptionV3``: the TensorFlow FID graph ported
to PyTorch (the features pytorch-fid, torch-fidelity and clean-fid report), including its
TF1-compatible resize to 299 x 299. It takes uint8 images (N, 3, H, W).

Weights are never downloaded. They are read from, in order: the ``weights`` argument
(``--inception-weights``), the environment variable ``INFINITYGAN_INCEPTION_WEIGHTS``, and
torch-fidelity's usual download location ``torch.hub.get_dir()/checkpoints/`` (i.e.
``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) under its file name
:data:`WEIGHTS_FILE`. When none exists, :func:`load_inception` raises a ``UserError`` naming
the file and where to put it; there is no fallback to other weights. The file is loaded with
``torch.load(weights_only=True)`` (or safetensors): tensors only, nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch

from ..errors import UserError

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + WEIGHTS_FILE)
ENV_VAR = "INFINITYGAN_INCEPTION_WEIGHTS"
FEATURE = "2048"
FEATURE_DIM = 2048
_LOCK = threading.Lock()


def default_weights_path() -> Path:
    """Where torch-fidelity would have downloaded the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def find_weights(weights: str | os.PathLike | None = None) -> Path:
    """The weights file to use (see the module docstring), or a ``UserError`` naming it."""
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise UserError(f"Inception weights not found: {p} (expected torch-fidelity's {WEIGHTS_FILE})")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise UserError(f"{ENV_VAR}={env}: no such file (expected torch-fidelity's {WEIGHTS_FILE})")
        return p
    p = default_weights_path()
    if p.is_file():
        return p
    raise UserError(
        f"FID/KID need the Inception-v3 weights {WEIGHTS_FILE} (from {WEIGHTS_URL}); "
        f"put it in {p.parent}/ or pass --inception-weights PATH (or set {ENV_VAR})")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from ..io.checkpoint import load_pickled_tensors

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # not safetensors, truncated
            raise UserError(f"cannot read Inception weights {path}: not a safetensors file, or truncated") from None
    try:
        sd = load_pickled_tensors(path)
    except Exception:  # torch's own message suggests weights_only=False: not advice to give
        raise UserError(f"cannot read Inception weights {path}: not a plain file of tensors (it holds other objects, "
                        "or is truncated); nothing in it was unpickled") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return sd


def weights_id(path: Path) -> str:
    """sha256 (first 16 hex digits) of the weights file, for cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def build_inception(state_dict: dict[str, torch.Tensor] | None = None, seed: int = 0) -> torch.nn.Module:
    """torch-fidelity's Inception-v3 feature extractor (pool3 features) with ``state_dict``, or
    with PyTorch's default random initialisation drawn from ``seed`` when None (for tests).

    torch-fidelity's constructor loads its weights itself (downloading them when given no path);
    here its loader is replaced, for the duration of the construction, by one that returns the
    given tensors, so nothing is downloaded or unpickled.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    random = state_dict is None

    class _Inception(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, sd, strict=True, assign=False):
            if random:
                return None  # keep the random initialisation
            missing = set(self.state_dict()) ^ set(sd)
            if missing:
                raise UserError(f"the Inception weights do not match torch-fidelity's network "
                                f"(keys differ: {sorted(missing)[:3]} ...); expected {WEIGHTS_FILE}")
            return super().load_state_dict(sd, strict=True)

    def _no_download(url, *args, **kwargs):
        return {} if random else state_dict

    with _LOCK:
        saved = tfi.load_state_dict_from_url
        tfi.load_state_dict_from_url = _no_download
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = _Inception("inception-v3-compat", [FEATURE])
        finally:
            tfi.load_state_dict_from_url = saved
    return net.eval()


def load_inception(weights: str | os.PathLike | None = None) -> tuple[torch.nn.Module, str]:
    """The network with the real weights and the weights' id (see :func:`find_weights`)."""
    path = find_weights(weights)
    return build_inception(_read_state_dict(path)), weights_id(path)


@torch.no_grad()
def features(net: torch.nn.Module, images: torch.Tensor, device=None) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float64 pool3 features (N, 2048) (on the CPU)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    dev = device if device is not None else next(net.parameters()).device
    (f,) = net(images.to(dev))
    return f.to("cpu", torch.float64)
