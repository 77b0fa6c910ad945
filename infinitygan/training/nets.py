"""The networks and optimizers of a run: G, D, the EMA of G, Adam, the DDP wrappers.

Adam with lr * r, betas (0, 0.99 ** r), r = every / (every + 1) for lazily regularized networks
(StyleGAN2). With W processes (torchrun) G's training forward and D are wrapped in
DistributedDataParallel, without buffer broadcasts (G and D keep no state buffers).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..api import build_generator
from ..config import ModelConfig
from ..discriminator import Discriminator
from ..errors import UserError
from ..nn.checkpointing import set_activation_checkpointing
from ..parallel import env as dist_

#: DDP's reducer warns (once per process, during the first backward) when a gradient's strides
#: differ from its bucket's (e.g. the grad of a (1, C) linear weight): a performance hint, not an error
GRAD_STRIDE_HINT = "Grad strides do not match bucket view strides"


@contextlib.contextmanager
def quiet_grad_stride_hint():
    """Silences only DDP's grad-stride hint, only inside the block (a backward through the DDP
    wrappers): importing this module leaves the process's warning filters as they were."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GRAD_STRIDE_HINT)
        yield


class GeneratorStep(nn.Module):
    """G's training forward: (rgb (B, 3, P, P), zS (B, C, n, n), W+ styles (B, n_styles, D)).

    A module so that DDP sees the whole forward, styles included (path length needs them). On
    the CPU its inputs are made channels_last, which the activations keep through G (and D):
    the same math in another memory layout, which oneDNN convolves faster.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.g = generator

    def forward(self, zg, zl, coords, noises, zg_mix=None, mix_index=None):
        if zl.device.type == "cpu":  # NHWC activations: faster oneDNN convolutions (CPU only)
            zl = zl.contiguous(memory_format=torch.channels_last)
            coords = coords.contiguous(memory_format=torch.channels_last)
        styles = self.g.styles(zg, zg_mix, mix_index)
        out = self.g(zg, zl, coords, list(noises), styles=styles)
        return out["rgb"], out["zs"], styles


@dataclass
class Nets:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    g_step: nn.Module  # GeneratorStep, DDP-wrapped when distributed
    g_step_raw: GeneratorStep
    d_fwd: nn.Module  # D, DDP-wrapped when distributed
    g_optim: torch.optim.Optimizer
    d_optim: torch.optim.Optimizer
    g_params: list
    d_params: list

    def fingerprint(self) -> str:
        """sha256 of every tensor of G, D and G_ema (identical on all ranks iff the replicas agree)."""
        h = hashlib.sha256()
        for m in (self.G, self.D, self.G_ema):
            for t in m.state_dict().values():
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def make_adam(params, lr: float, every: int) -> torch.optim.Adam:
    r = every / (every + 1) if every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * r, betas=(0.0, 0.99 ** r))


def _no_buffer_sync() -> dict:
    """DDP's keyword for "no buffer broadcast at every forward" (renamed in recent PyTorch)."""
    params = inspect.signature(DDP.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def build_nets(cfg: ModelConfig, ctx: dist_.DistContext, seed: int, checkpoint_activations: bool = False) -> Nets:
    """G (``api.build_generator``), D and G_ema with initial weights drawn from ``seed``, their
    Adam optimizers and DDP wrappers, on ``ctx.device``. ``checkpoint_activations``: G and D
    (not G_ema) checkpoint their layers and blocks (``nn.checkpointing``)."""
    tc, dev = cfg.training, ctx.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            G = build_generator(cfg)
        except ValueError as e:
            raise UserError(f"cannot train this config: {e}") from None
        D = Discriminator(cfg.discriminator, cfg.generator.patch_size)
    G_ema = copy.deepcopy(G)
    G.to(dev).train()
    D.to(dev).train()
    G_ema.to(dev).eval()
    requires_grad(G_ema, False)
    if checkpoint_activations:
        set_activation_checkpointing(G)
        set_activation_checkpointing(D)
    g_params, d_params = list(G.parameters()), list(D.parameters())
    g_optim = make_adam(g_params, tc.lr, tc.pl_every)
    d_optim = make_adam(d_params, tc.lr, tc.r1_every)
    g_step_raw = GeneratorStep(G)
    g_step, d_fwd = g_step_raw, D
    if ctx.distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        g_step = DDP(g_step_raw, device_ids=ids, **_no_buffer_sync())
        d_fwd = DDP(D, device_ids=ids, **_no_buffer_sync())
    return Nets(G, D, G_ema, g_step, g_step_raw, d_fwd, g_optim, d_optim, g_params, d_params)
