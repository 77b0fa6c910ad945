"""Training losses of InfinityGAN (paper Section 3.5, Eq. 2, 5 and 6): small pure functions.

Shapes: B = batch, P = patch size, S = zl window, n = zS window, D = style dimension.

* ``d_logistic_loss``       D's non-saturating logistic loss (softplus form).
* ``g_nonsaturating_loss``  G's non-saturating loss.
* ``r1_penalty``            R1 gradient penalty on real images (Mescheder et al. 2018).
* ``path_length_penalty``   StyleGAN2 path-length regularization w.r.t. the W+ styles of GT.
* ``aux_vertical_loss``     auxiliary regression of the vertical coordinate (output 0 only).
* ``diversity_loss``        mode-seeking diversity loss between two zl and their zS (Eq. 2).

The weights (``r1_gamma / 2 * r1_every``, ``pl_weight * pl_every``, ...) are applied by the
training loop, not here.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "r1_penalty",
    "path_length_penalty",
    "aux_vertical_loss",
    "diversity_loss",
]


def d_logistic_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """softplus(-D(x)).mean() + softplus(D(G(z))).mean().

    real_logit: (B_real,), fake_logit: (B_fake,) -> scalar (computed in float32).
    """
    return F.softplus(-real_logit.float()).mean() + F.softplus(fake_logit.float()).mean()


def g_nonsaturating_loss(fake_logit: torch.Tensor) -> torch.Tensor:
    """softplus(-D(G(z))).mean(). fake_logit: (B,) -> scalar (float32)."""
    return F.softplus(-fake_logit.float()).mean()


def r1_penalty(real_logit: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 = E[ ||d D(x) / d x||^2 ] over the batch.

    real_logit: (B,) computed from ``real_img`` (B, 3, P, P), which must require grad.
    The gradient is taken with ``create_graph=True`` so that the penalty can be back-propagated
    into D's parameters. Returns a scalar (float32); the loop multiplies it by
    ``r1_gamma / 2 * r1_every``.
    """
    (grad,) = torch.autograd.grad(real_logit.float().sum(), real_img, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def path_length_penalty(img: torch.Tensor, styles: torch.Tensor, mean: torch.Tensor | float,
                        decay: float, noise: torch.Tensor | None = None,
                        generator: torch.Generator | None = None,
                        reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regularization, with the gradient w.r.t. the W+ styles of GT.

    img: (B, 3, H, W) generated from ``styles`` (B, n_styles, D) (part of the graph).
    noise: the random image-space direction y (B, 3, H, W) ~ N(0, 1) / sqrt(H W); drawn here
      (from ``generator``) when not given.
    mean: running mean ``a`` of the path lengths (scalar tensor or float).
    decay: a <- a + decay * (mean(lengths) - a).
    reduce_mean: maps this process's mean path length (scalar) to the mean over all processes
      (data-parallel training; identity by default), so that ``a`` stays identical everywhere.

    Path length of a sample: sqrt(mean over style slots of ||J_w^T y||^2 summed over D).
    Returns (penalty = mean((lengths - a_new)^2) (scalar, differentiable), a_new (detached
    scalar), lengths (B,) detached).
    """
    h, w = img.shape[-2:]
    if noise is None:
        noise = torch.randn(img.shape, generator=generator, dtype=torch.float32)
        noise = noise.to(img.device) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((img.float() * noise.to(img.device, torch.float32)).sum(), styles,
                                  create_graph=True)
    lengths = torch.sqrt(grad.float().pow(2).sum(2).mean(1))
    batch_mean = lengths.detach().mean()
    if reduce_mean is not None:
        batch_mean = reduce_mean(batch_mean)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=lengths.device)
    new_mean = (mean_t + decay * (batch_mean - mean_t)).detach()
    penalty = (lengths - new_mean).pow(2).mean()
    return penalty, new_mean, lengths.detach()


def aux_vertical_loss(aux: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """L1 between the auxiliary head's output 0 (vertical position) and the label.

    aux: (B, A) with A >= 1 (outputs 1.. are ignored); label: (B,) in [-1, 1]. -> scalar.
    """
    return (aux[:, 0].float() - label.to(aux.device, torch.float32)).abs().mean()


def diversity_loss(zl1: torch.Tensor, zl2: torch.Tensor, zs1: torch.Tensor, zs2: torch.Tensor,
                   eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking diversity loss (paper Eq. 2), mean over the K pairs.

    zl1, zl2: (K, zl_dim, S, S) local latents of the pairs (same zg and coordinates);
    zs1, zs2: (K, C, n, n) their structure features GS(zg, zl, c).
    L = mean_k ||zl1_k - zl2_k||_1 / (||zs1_k - zs2_k||_1 + eps), the L1 norms being sums over
    all elements of a sample. Minimising it pushes the two structures APART (the paper's
    direction; the value scales with numel(zl) / numel(zs) for a fixed average distance).
    Returns a scalar (float32); gradients flow into zs (zl is usually a constant input).
    """
    dz = (zl1.float() - zl2.float()).abs().flatten(1).sum(1)
    ds = (zs1.float() - zs2.float()).abs().flatten(1).sum(1)
    return (dz / (ds + eps)).mean()
