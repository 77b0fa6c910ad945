"""Equalized-learning-rate layers and small ops shared by the generator and discriminator.

Weights are stored unscaled (initialised from N(0, 1) / lr_mul) and scaled at run time by
lr_mul / sqrt(fan_in), as in StyleGAN2; this keeps the authors' checkpoints loadable as-is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def _can_overwrite(x: torch.Tensor) -> bool:
    """True when x may be modified in place: no autograd graph is being recorded for it."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, slope: float = 0.2,
                     inplace: bool = False) -> torch.Tensor:
    """leaky_relu(x + bias, slope) * sqrt(2); bias (C,) broadcast over dim 1.

    With ``inplace`` (and no autograd graph), x is overwritten: the inference fast path.
    """
    shape = None if bias is None else [1, bias.shape[0]] + [1] * (x.dim() - 2)
    if inplace and _can_overwrite(x):
        if bias is not None:
            x.add_(bias.view(shape).to(x.dtype))
        return F.leaky_relu_(x, slope).mul_(SQRT2)
    if bias is not None:
        x = x + bias.view(shape).to(x.dtype)
    return F.leaky_relu(x, slope) * SQRT2


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU (0.2) + gain sqrt(2). Parameter: bias (C,)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, inplace=inplace)


class PixelNorm(nn.Module):
    """x * rsqrt(mean(x^2 over dim 1) + 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    weight (out, in), bias (out,). y = x @ (W * lr_mul / sqrt(in))^T + b * lr_mul, then
    optionally fused leaky ReLU. Accepts x of shape (..., in).
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        b = self.bias * self.lr_mul
        if self.activation:
            return F.leaky_relu(F.linear(x, w) + b, 0.2) * SQRT2
        return F.linear(x, w, b)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (discriminator). weight (out, in, k, k)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class NoiseInjection(nn.Module):
    """x + weight * noise, noise (B or 1, 1, H, W) broadcast over channels. weight (1,), init 0."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None, inplace: bool = False) -> torch.Tensor:
        if noise is None:
            return x
        n = self.weight.to(x.dtype) * noise.to(x.dtype)
        if inplace and _can_overwrite(x):
            return x.add_(n)
        return x + n


def center_crop(x: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Crop the last two dims of x symmetrically to (height, width).

    The size difference must be even on both axes (every crop in the padding-free networks
    is symmetric by construction); anything else is a wiring bug and raises.
    """
    width = height if width is None else width
    dh, dw = x.shape[-2] - height, x.shape[-1] - width
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f"cannot center-crop {tuple(x.shape[-2:])} to {(height, width)}")
    if dh == 0 and dw == 0:
        return x
    return x[..., dh // 2: dh // 2 + height, dw // 2: dw // 2 + width]
