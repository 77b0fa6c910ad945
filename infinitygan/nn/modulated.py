"""Padding-free modulated convolutions (StyleGAN2 weight (de)modulation) and ToRGB.

A modulated conv accepts three kinds of style, all through the same weights:

* shared style ``(1, D)``: the weights are modulated once and a plain convolution runs over
  the whole batch (all tiles of one image share their style: the fast inference path);
* per-sample styles ``(B, D)``: the input is scaled per sample, convolved with the shared
  weight and demodulated per sample (training; mathematically identical to grouped convs);
* per-pixel styles ``(B, D, H, W)`` at the input's resolution (spatial style fusion): the
  input is scaled per pixel and demodulated with a per-pixel map.

No layer pads: a 3x3 conv maps H -> H - 2, the upsampling conv maps H -> 2H - 3
(transposed 3x3 stride 2 -> 2H + 1, crop 1 per side -> 2H - 1, [1,2,1] blur valid -> 2H - 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualLinear, center_crop


def blur_kernel_121() -> torch.Tensor:
    """outer([1,2,1], [1,2,1]) / 16 * 4: the [1,2,1] blur with the x4 gain of 2x upsampling. (3, 3)."""
    k = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * 4.0


def _depthwise(kernel: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    return kernel.to(device=like.device, dtype=like.dtype).expand(channels, 1, *kernel.shape)


def upsample_rgb(rgb: torch.Tensor, kernel: torch.Tensor, padded: bool = False) -> torch.Tensor:
    """Skip-path upsampling: (B, C, H, W) -> (B, C, 2H - 1, 2W - 1), or 2H x 2W when ``padded``.

    Depthwise transposed conv (stride 2) with the [1,2,1] kernel, then crop 1 pixel per side.
    """
    c = rgb.shape[1]
    return F.conv_transpose2d(rgb, _depthwise(kernel, c, rgb), stride=2, padding=1, groups=c,
                              output_padding=1 if padded else 0)


def _upsample_map(m: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling of a per-pixel map, aligned with the upsampling conv's output.

    (B, C, H, W) -> (B, C, 2H - 3, 2W - 3). Output position 2i+1 (global frame) takes the value
    of input i, position 2i+2 the mean of inputs i and i+1: translation-equivariant, so tiling
    does not change it.
    """
    k = torch.tensor([0.5, 1.0, 0.5])
    k = torch.outer(k, k)
    c = m.shape[1]
    out = F.conv_transpose2d(m, _depthwise(k, c, m), stride=2, groups=c)
    return out[..., 2:-2, 2:-2]


class ModulatedConv2d(nn.Module):
    """Modulated (and by default demodulated) k x k convolution without padding.

    Parameters: weight (out, in, k, k) ~ N(0, 1), scaled by 1/sqrt(in k^2) at run time;
    modulation: EqualLinear(style_dim -> in), bias initialised to 1.

    forward(x (B, in, H, W), style) -> (B, out, H', W') with H' = H - k + 1, or 2H - 3 when
    ``upsample`` (k must be 3 then). ``style`` is (1, style_dim), (B, style_dim) or
    (B, style_dim, H, W) (see the module docstring).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, padded: bool = False):
        super().__init__()
        self.padded = padded  # zero padding ("same" sizes, 2H when upsampling): baselines only
        if upsample and kernel != 3:
            raise ValueError("the upsampling modulated conv is 3x3")
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        self.register_buffer("blur_kernel", blur_kernel_121(), persistent=False)

    def extra_repr(self) -> str:
        return (f"{self.in_ch}, {self.out_ch}, kernel={self.kernel}, upsample={self.upsample}, "
                f"demodulate={self.demodulate}")

    def style_scales(self, style: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, in) or per pixel (B, D, H, W) -> (B, in, H, W)."""
        if style.dim() == 2:
            return self.modulation(style)
        return self.modulation(style.movedim(1, -1)).movedim(-1, 1)

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Plain (un-modulated) conv with weight w (out, in, k, k); blur included when upsampling."""
        pad = self.kernel // 2 if self.padded else 0
        if not self.upsample:
            return F.conv2d(x, w, padding=pad)
        out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=1,  # = crop 1 per side
                                 output_padding=1 if self.padded else 0)
        return F.conv2d(out, _depthwise(self.blur_kernel, out.shape[1], out), groups=out.shape[1], padding=pad)

    def _per_sample(self, x: torch.Tensor, w: torch.Tensor, s: torch.Tensor):
        """Per-sample scales s (B, in): (conv(x * s, w) (B, out, H', W'), demodulation (B, out) or None)."""
        if s.shape[0] != x.shape[0]:
            raise ValueError(f"style batch {s.shape[0]} does not match input batch {x.shape[0]}")
        out = self._conv(x * s[:, :, None, None], w)
        d = torch.rsqrt(s.pow(2) @ w.pow(2).sum(dim=(2, 3)).t() + 1e-8) if self.demodulate else None
        return out, d

    def undemodulated(self, x: torch.Tensor, style: torch.Tensor):
        """Per-sample styles (B, style_dim) only: the output before demodulation and the
        demodulation (B, out) (None without), so that the caller folds it into its next pass:
        ``forward(x, style) == out * d[:, :, None, None]``."""
        if style.dim() != 2:
            raise ValueError("undemodulated takes per-sample styles (B, style_dim)")
        w = self.weight.to(x.dtype) * self.scale
        return self._per_sample(x, w, self.style_scales(style.to(x.dtype)))

    def forward(self, x: torch.Tensor, style: torch.Tensor, channels: slice | None = None) -> torch.Tensor:
        """``channels``: only those output channels (B, len, H', W'), the same values as the
        full output's (each output channel has its own weights and demodulation)."""
        w = (self.weight if channels is None else self.weight[channels]).to(x.dtype) * self.scale
        s = self.style_scales(style.to(x.dtype))
        if s.dim() == 2 and s.shape[0] == 1:
            # shared style: modulate the weights once, run a plain conv over the batch
            wm = w * s.view(1, -1, 1, 1)
            if self.demodulate:
                wm = wm * torch.rsqrt(wm.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            return self._conv(x, wm)
        if s.dim() == 2:
            out, d = self._per_sample(x, w, s)
            return out if d is None else out * d[:, :, None, None]
        # per-pixel styles at the input's resolution
        if s.shape[-2:] != x.shape[-2:]:
            s = center_crop(s, x.shape[-2], x.shape[-1])
        out = self._conv(x * s, w)
        if self.demodulate:
            wsq = w.pow(2).sum(dim=(2, 3))[:, :, None, None]  # (out, in, 1, 1)
            d = torch.rsqrt(F.conv2d(s.pow(2), wsq) + 1e-8)  # (B, out, H, W)
            if self.padded:
                d = F.interpolate(d, size=out.shape[-2:], mode="bilinear", align_corners=False)
            elif self.upsample:
                d = _upsample_map(d)
            else:
                d = center_crop(d, out.shape[-2], out.shape[-1])
            out = out * d
        return out


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, plus the upsampled skip.

    forward(x (B, in, H, W), style, skip (B, 3, h, w) or None) -> (B, 3, H, W), where the skip
    is upsampled to 2h - 1 and center-cropped to H.
    """

    def __init__(self, in_ch: int, style_dim: int, out_ch: int = 3, padded: bool = False):
        super().__init__()
        self.padded = padded
        self.conv = ModulatedConv2d(in_ch, out_ch, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.register_buffer("up_kernel", blur_kernel_121(), persistent=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            skip = upsample_rgb(skip, self.up_kernel, self.padded)
            out = out + center_crop(skip, out.shape[-2], out.shape[-1])
        return out
