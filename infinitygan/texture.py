"""Texture synthesizer GT (paper Section 3.3): padding-free StyleGAN2 synthesis on zS.

zS replaces StyleGAN2's constant input. Every zero padding is removed, so each output pixel
depends only on a fixed window of zS, noise and styles: any region of the infinite image can
be synthesized independently and the pieces agree pixel for pixel.

Per stage: upsampling modulated 3x3 conv (H -> 2H - 3), modulated 3x3 conv (H -> H - 2), both
with noise injection + bias + leaky ReLU; ToRGB after the second conv with the RGB skip
upsampled ([1,2,1], 2H - 1) and center-cropped. Paper-101 sizes: zS 11 -> 19 -> 17 -> 31 -> 29
-> 55 -> 53 -> 103 -> 101 (RGB 17, 29, 53, 101). Styles: 2K + 1 slots (9 for K = 4); conv i
uses slot i, the ToRGB of stage k uses slot min(2k + 3, 2K).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import GeneratorConfig
from .nn import EqualLinear, FusedLeakyReLU, ModulatedConv2d, NoiseInjection, PixelNorm, ToRGB
from .nn.checkpointing import run_segment
from .nn.layers import SQRT2, fused_leaky_relu


class MappingNetwork(nn.Module):
    """z (B, zg_dim) -> w (B, style_dim): PixelNorm + L equalized linear layers (lr x 0.01)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        d = cfg.zg_dim
        for _ in range(cfg.mapping_layers):
            layers.append(EqualLinear(d, cfg.style_dim, lr_mul=cfg.mapping_lr_mul, activation=True))
            d = cfg.style_dim
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


#: activations are clamped to +-FP16_CLAMP in float16 (as StyleGAN2-ADA's conv_clamp): without
#: it a trained model's large activations overflow float16's 65,504 range
FP16_CLAMP = 256.0


def clamp_half(x: torch.Tensor) -> torch.Tensor:
    """Clamp float16 activations to +-FP16_CLAMP (other dtypes unchanged)."""
    if x.dtype != torch.float16:
        return x
    if torch.is_grad_enabled() and x.requires_grad:
        return x.clamp(-FP16_CLAMP, FP16_CLAMP)
    return x.clamp_(-FP16_CLAMP, FP16_CLAMP)


class StyledConv(nn.Module):
    """Modulated conv (optionally upsampling) + noise + bias + leaky ReLU (clamped in float16)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool, padded: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, demodulate=True, upsample=upsample, padded=padded)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise=None):
        if torch.is_grad_enabled() and style.dim() == 2 and style.shape[0] > 1 and self.conv.demodulate:
            return clamp_half(self._training_forward(x, style, noise))
        # the conv output is a fresh tensor: without autograd, noise/bias/activation run in place
        return clamp_half(self.activate(self.noise(self.conv(x, style), noise, inplace=True), inplace=True))

    def forward_channels(self, channels: slice, x, style, noise=None):
        """Output channels ``channels`` of ``forward`` (B, len, H', W'), computed on their own
        (activation checkpointing recomputes a wide layer a channel group at a time)."""
        out = self.noise(self.conv(x, style, channels), noise)
        return clamp_half(fused_leaky_relu(out, self.activate.bias[channels]))

    def _training_forward(self, x, style, noise):
        """The same function with autograd, in three elementwise passes over the output instead
        of five (demodulate, noise, bias, leaky ReLU, gain): leaky ReLU is positively homogeneous,
        so sqrt(2) * lrelu(out d + n + b) = lrelu(out (sqrt(2) d) + sqrt(2) n + sqrt(2) b); the
        demodulation, noise and gain go in one addcmul, the bias and the leaky ReLU run in place
        on its fresh result (neither's backward needs the overwritten values)."""
        out, d = self.conv.undemodulated(x, style)
        g = SQRT2
        dg = (d * g)[:, :, None, None].to(out.dtype)
        if noise is None:
            y = out * dg
        else:
            y = torch.addcmul(self.noise.weight.to(out.dtype) * g * noise.to(out.dtype), out, dg)
        y = y.add_(self.activate.bias.to(out.dtype).view(1, -1, 1, 1) * g)
        return F.leaky_relu_(y, 0.2)


class TextureSynthesizer(nn.Module):
    """GT. forward(zs, styles, noises) -> RGB (B, 3, 2^K n - 5 (2^K - 1), ...).

    zs: (B, gs_channels, n, n') structure features.
    styles: (1 or B, n_styles, style_dim) W+ styles, or a list of n_styles per-slot styles,
      each (1 or B, style_dim) or per pixel (B, style_dim, H, W) at that layer's input size.
    noises: list of 2K tensors (1 or B, 1, H_i, W_i) matching each conv's output, or None
      entries for no noise.
    rgb_styles: optional K styles, one per ToRGB (instead of slot ``rgb_slot(k)``): per-pixel
      styles of a ToRGB live on its own input lattice, not on the conv's sharing its slot.
    padded: zero-padded StyleGAN2 convs (n -> 2^K n pixels): the stylegan2-nci baseline only.
    checkpoint_segments: activation checkpointing of each conv and ToRGB (``nn.checkpointing``;
      training only, off by default).
    """

    checkpoint_segments = False

    def __init__(self, cfg: GeneratorConfig, padded: bool = False):
        super().__init__()
        self.n_up = cfg.n_up
        self.n_styles = cfg.n_styles
        convs, rgbs = [], []
        in_ch = cfg.gs_channels
        for i, out_ch in enumerate(cfg.ts_channels):
            convs.append(StyledConv(in_ch, out_ch, cfg.style_dim, upsample=(i % 2 == 0), padded=padded))
            if i % 2 == 1:
                rgbs.append(ToRGB(out_ch, cfg.style_dim, padded=padded))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(rgbs)

    def rgb_slot(self, k: int) -> int:
        return min(2 * k + 3, 2 * self.n_up)

    def forward(self, zs: torch.Tensor, styles: torch.Tensor | Sequence[torch.Tensor],
                noises: Sequence[torch.Tensor | None] | None = None,
                rgb_styles: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if isinstance(styles, torch.Tensor):
            if styles.dim() != 3 or styles.shape[1] != self.n_styles:
                raise ValueError(f"styles must be (B, {self.n_styles}, D), got {tuple(styles.shape)}")
            styles = [styles[:, i] for i in range(self.n_styles)]
        if noises is None:
            noises = [None] * len(self.convs)
        x, rgb, ck = zs, None, self.checkpoint_segments
        for i, conv in enumerate(self.convs):
            x = run_segment(ck, conv, x, styles[i], noises[i])
            if i % 2 == 1:
                k = i // 2
                st = styles[self.rgb_slot(k)] if rgb_styles is None else rgb_styles[k]
                rgb = clamp_half(run_segment(ck, self.to_rgbs[k], x, st, rgb))
        return rgb
