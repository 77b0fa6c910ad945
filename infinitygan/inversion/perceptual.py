"""LPIPS (Zhang et al. 2018) for the inversion objective, loaded without any network access.

The ``lpips`` package holds its small linear heads (weights/v0.1/{vgg,alex}.pth) but fetches the
ImageNet backbone (torchvision VGG16 / AlexNet) from the internet on first use, which would hang
on an offline machine. Here the network is built with a random backbone (no download) and the
backbone weights are read from a file: the given path, or torchvision's usual cache
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``, ``alexnet-owt-7be5be79.pth``). Both files
load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..errors import UserError

#: torchvision's file names of the ImageNet weights LPIPS uses as its backbone
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
MODES = ("auto", "lpips", "none")


def backbone_cache_path(net: str = "vgg") -> Path:
    """Where torchvision caches the backbone weights (torch.hub's checkpoints directory)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        from ..io.checkpoint import load_pickled_tensors

        state = load_pickled_tensors(path)
    except Exception as e:  # corrupt or not a state dict
        raise UserError(f"cannot read LPIPS weights {path}: {type(e).__name__}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a state dict of weights")
    return state


def build_lpips(net: str = "vgg", backbone: str | Path | None = None) -> torch.nn.Module:
    """An ``lpips.LPIPS`` with real weights, eval mode, no gradients on its parameters.

    backbone: torchvision state dict of the ImageNet network (``features.{i}.weight`` ...);
    default: the torch hub cache. Raises FileNotFoundError when the file is absent.
    """
    if net not in BACKBONE_FILES:
        raise UserError(f"unknown LPIPS network {net!r} (vgg or alex)")
    path = Path(backbone) if backbone is not None else backbone_cache_path(net)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    # backbone: torchvision "features.{i}.*" -> the lpips slice that holds layer i
    feats = {k[len("features."):]: v for k, v in _load_weights(path).items() if k.startswith("features.")}
    slots = {}
    for sname, sl in model.net.named_children():
        for idx, _ in sl.named_children():
            slots[idx] = sname
    mapped = {}
    for k, v in feats.items():
        idx = k.split(".")[0]
        if idx in slots:
            mapped[f"{slots[idx]}.{k}"] = v
    own = model.net.state_dict()
    if set(mapped) != set(own) or any(own[k].shape != v.shape for k, v in mapped.items()):
        raise UserError(f"{path} does not hold the {net} backbone LPIPS needs")
    model.net.load_state_dict(mapped)
    # linear heads shipped inside the lpips package
    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    state = _load_weights(heads)
    missing = [k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.") and k not in state]
    if missing:
        raise UserError(f"{heads} lacks LPIPS heads {missing[:2]}")
    model.load_state_dict(state, strict=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def perceptual_loss(mode: str = "auto", net: str = "vgg", backbone: str | Path | None = None,
                    warn=None) -> torch.nn.Module | None:
    """The LPIPS module for ``--perceptual MODE``: ``none`` -> None; ``lpips`` -> the module or a
    UserError when its weights are absent; ``auto`` -> the module, or None after one warning."""
    if mode not in MODES:
        raise UserError(f"unknown --perceptual {mode!r} (choose from {', '.join(MODES)})")
    if mode == "none":
        return None
    try:
        return build_lpips(net, backbone)
    except FileNotFoundError as e:
        where = os.fspath(e.args[0]) if e.args else "?"
        msg = f"LPIPS backbone weights not found at {where}"
        if mode == "lpips":
            raise UserError(f"{msg} (place torchvision's {BACKBONE_FILES[net]} there or pass --lpips-weights)") from None
        (warn or (lambda m: warnings.warn(m, stacklevel=2)))(f"{msg}: inverting without the perceptual term")
        return None
