"""Training losses of InfinityGAN (paper Section 3.5, Eq. 2, 5 and 6): small pure functions.

Shapes: B = batch, P = patch size, S = zl window, n = zS window, D = style dimension.

* ``d_logistic_loss``       D's non-saturating logistic loss (softplus form).
* ``g_nonsaturating_loss``  G's non-saturating loss.
* ``r1_penalty``            R1 gradient penalty on real images (Mescheder et al. 2018).
* ``path_length_penalty``   StyleGAN2 path-length regularization w.r.t. the W+ styles of GT.
* ``aux_vertical_loss``     auxiliary regression of the vertical coordinate (output 0 only).
* ``diversity_loss``        mode-seeking diversity loss between two zl and their zS (Eq. 2).
* ``colour_consistency_loss`` (not in the paper) squared difference of two patches' mean colours.

The weights (``r1_gamma / 2 * r1_every``, ``pl_weight * pl_every``, ...) are applied by the
training loop, not here. Every loss is computed in the precision of its inputs, at least float32
(bfloat16 / float16 activations under autocast are promoted; float64 stays float64, which the
parity test with the authors' float64 training iteration needs).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "loss_dtype",
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "r1_penalty",
    "path_length_penalty",
    "style_path_lengths",
    "aux_vertical_loss",
    "diversity_loss",
    "colour_consistency_loss",
]


def up(x: torch.Tensor) -> torch.Tensor:
    """x promoted to at least float32 (float64 kept)."""
    return x if x.dtype == torch.float64 else x.float()


def loss_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def d_logistic_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """softplus(-D(x)).mean() + softplus(D(G(z))).mean().

    real_logit: (B_real,), fake_logit: (B_fake,) -> scalar.
    """
    return F.softplus(-up(real_logit)).mean() + F.softplus(up(fake_logit)).mean()


def g_nonsaturating_loss(fake_logit: torch.Tensor) -> torch.Tensor:
    """softplus(-D(G(z))).mean(). fake_logit: (B,) -> scalar."""
    return F.softplus(-up(fake_logit)).mean()


def r1_penalty(real_logit: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 = E[ ||d D(x) / d x||^2 ] over the batch.

    real_logit: (B,) computed from ``real_img`` (B, 3, P, P), which must require grad.
    The gradient is taken with ``create_graph=True`` so that the penalty can be back-propagated
    into D's parameters. Returns a scalar; the loop multiplies it by
    ``r1_gamma / 2 * r1_every``.
    """
    (grad,) = torch.autograd.grad(up(real_logit).sum(), real_img, create_graph=True)
    return up(grad).pow(2).flatten(1).sum(1).mean()


def style_path_lengths(grad: torch.Tensor) -> torch.Tensor:
    """Path length of each sample from grad = J_w^T y (B, n_styles, D): StyleGAN2's
    sqrt(mean over style slots of ||grad||^2 summed over D). (B,)."""
    return torch.sqrt(grad.pow(2).sum(2).mean(1))


def path_length_penalty(img: torch.Tensor, styles: torch.Tensor, mean: torch.Tensor | float,
                        decay: float, noise: torch.Tensor | None = None,
                        generator: torch.Generator | None = None,
                        reduce_mean: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        lengths_of: Callable[[torch.Tensor], torch.Tensor] = style_path_lengths,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regularization, with the gradient w.r.t. the W+ styles of GT.

    img: (B, 3, H, W) generated from ``styles`` (B, n_styles, D) (part of the graph).
    noise: the random image-space direction y (B, 3, H, W) ~ N(0, 1) / sqrt(H W); drawn here
      (from ``generator``) when not given.
    mean: running mean ``a`` of the path lengths (scalar tensor or float).
    decay: a_new = a + decay * (mean(lengths) - a).
    reduce_mean: maps this process's mean path length (scalar) to the mean over all processes
      (data-parallel training; identity by default), so that ``a`` stays identical everywhere.
    lengths_of: grad (B, n_styles, D) -> lengths (B,); ``style_path_lengths`` by default.

    The penalty is mean((lengths - a_new)^2) with a_new NOT detached: its gradient also flows
    through mean(lengths) inside a_new, as in StyleGAN2 (TF and ADA) and the authors' code. That
    part of the gradient, -2 decay mean(lengths - a_new) / n per sample of a batch of n, needs the
    mean over ALL processes' samples, so it is added as a zero-valued term with that gradient
    (the same on one process as autograd through a_new, and exact under data parallelism).
    Returns (penalty (scalar, differentiable), a_new (detached scalar), lengths (B,) detached).
    """
    h, w = img.shape[-2:]
    dt = loss_dtype(img)
    if noise is None:
        noise = torch.randn(img.shape, generator=generator, dtype=torch.float32)
        noise = noise.to(img.device) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((up(img) * noise.to(img.device, dt)).sum(), styles, create_graph=True)
    lengths = lengths_of(up(grad))
    reduce = reduce_mean if reduce_mean is not None else (lambda x: x)
    local = lengths.mean()
    mean_t = torch.as_tensor(mean, device=lengths.device).to(lengths.dtype)
    new_mean = (mean_t + decay * (reduce(local.detach()) - mean_t)).detach()
    spread = reduce((lengths.detach() - new_mean).mean())  # mean(lengths - a_new) over all processes
    penalty = (lengths - new_mean).pow(2).mean() - 2.0 * decay * spread * (local - local.detach())
    return penalty, new_mean, lengths.detach()


def aux_vertical_loss(aux: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """L1 between the auxiliary head's output 0 (vertical position) and the label.

    aux: (B, A) with A >= 1 (outputs 1.. are ignored); label: (B,) in [-1, 1]. -> scalar.
    """
    a = up(aux[:, 0])
    return (a - label.to(aux.device, a.dtype)).abs().mean()


def diversity_loss(zl1: torch.Tensor, zl2: torch.Tensor, zs1: torch.Tensor, zs2: torch.Tensor,
                   eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking diversity loss (paper Eq. 2), mean over the K pairs.

    zl1, zl2: (K, zl_dim, S, S) local latents of the pairs (same zg and coordinates);
    zs1, zs2: (K, C, n, n) their structure features GS(zg, zl, c).
    L = mean_k ||zl1_k - zl2_k||_1 / (||zs1_k - zs2_k||_1 + eps), the L1 norms being sums over
    all elements of a sample. Minimising it pushes the two structures APART (the paper's
    direction; the value scales with numel(zl) / numel(zs) for a fixed average distance).
    Returns a scalar; gradients flow into zs (zl is usually a constant input).
    """
    dz = (up(zl1) - up(zl2)).abs().flatten(1).sum(1)
    ds = (up(zs1) - up(zs2)).abs().flatten(1).sum(1)
    return (dz / (ds + eps)).mean()


def colour_consistency_loss(rgb1: torch.Tensor, rgb2: torch.Tensor) -> torch.Tensor:
    """Squared difference of mean colours, mean over the K pairs and the channels (not in the paper).

    rgb1, rgb2: (K, 3, P, P) generated patches of pairs that share zg, style mixing and the
    vertical window and differ in zl and horizontal phase (two places of one canvas, the loop's
    colour pairs). L = mean_k,c (mean_xy rgb1 - mean_xy rgb2)^2.
    It asks the global appearance (day or night, the palette) to come from zg, leaving the local
    latents the layout: squared, so the rare pairs whose colours differ by a whole palette (a night
    sky in one, day in the other) weigh most and small local shifts (a lake, a ridge) almost nothing.
    """
    d = up(rgb1).mean((2, 3)) - up(rgb2).mean((2, 3))
    return (d * d).mean()
