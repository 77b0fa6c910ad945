"""Discriminator: StyleGAN2's residual discriminator plus a vertical-coordinate head (paper 3.5).

Zero padding is kept here (padding-free matters only for the generator). Blur [1,3,3,1]
before every stride-2 conv. Sizes for a 101 patch: FromRGB 1x1 -> 5 residual blocks
101 -> 50 -> 25 -> 12 -> 6 -> 3 -> minibatch stddev -> 3x3 conv -> flatten -> two heads:
real/fake logit (B,) and auxiliary coordinates (B, 3), of which output 0 (vertical position
of the patch in [-1, 1]) is trained.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiscriminatorConfig
from .nn import EqualConv2d, EqualLinear, FusedLeakyReLU
from .nn.checkpointing import run_segment
from .nn.layers import SQRT2


class Blur(nn.Module):
    """Depthwise [1,3,3,1] blur (normalised) with zero padding (pad0, pad1) on each axis."""

    def __init__(self, pad: tuple[int, int]):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", k / k.sum(), persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, 4, 4)
        if self.pad[0] == self.pad[1]:  # the conv's own zero padding: no padded copy, no pad backward
            return F.conv2d(x, k, padding=self.pad[0], groups=c)
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return F.conv2d(x, k, groups=c)


class ConvLayer(nn.Sequential):
    """(blur) + equalized conv (+ bias + leaky ReLU). 'same' padding unless downsampling.

    forward(x, gain) = gain * layer(x). The activation's bias, its sqrt(2) gain and ``gain`` ride
    on the convolution (leaky ReLU is positively homogeneous: lrelu(c * y) = c * lrelu(y) for
    c > 0, and the conv is linear), so an activated layer makes one elementwise pass over its
    output (the leaky ReLU) instead of three (bias, leaky ReLU, gain), and the residual block's
    1 / sqrt(2) costs no pass at all: the activations are the largest tensors of D, and on the
    CPU those passes are bound by memory bandwidth. The parameters are those of the modules
    (``N.weight`` of the conv, ``M.bias`` of the activation), as in StyleGAN2 checkpoints.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, downsample: bool = False, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = 2 + (kernel - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, kernel, stride=2, padding=0, bias=False))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)
        self.downsample, self.activate = downsample, activate

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return self.forward_channels(slice(None), x, gain)

    def forward_channels(self, channels: slice, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """Output channels ``channels`` of ``forward`` (B, len, H', W'), computed on their own
        (activation checkpointing recomputes a wide layer a channel group at a time). A group of
        a downsampling layer runs the blur and the stride-2 conv as one stride-2 conv with the
        blurred kernel, so that no blurred copy of the input (as large as it) is held."""
        whole = channels == slice(None)
        part = (lambda t: t) if whole else (lambda t: t[channels])  # noqa: E731
        conv: EqualConv2d = self[1 if self.downsample else 0]
        w, padding = part(conv.weight), conv.padding
        if self.downsample and whole:
            x = self[0](x)
        elif self.downsample:
            w, padding = _blurred_kernel(w, self[0]), self[0].pad[0]
            if self[0].pad[0] != self[0].pad[1]:
                x, padding = F.pad(x, (self[0].pad[0], self[0].pad[1]) * 2), 0
        if not self.activate:
            return F.conv2d(x, w * (conv.scale * gain), None if conv.bias is None else part(conv.bias) * gain,
                            stride=conv.stride, padding=padding)
        g = SQRT2 * gain
        y = F.conv2d(x, w * (conv.scale * g), part(self[-1].bias).to(x.dtype) * g,
                     stride=conv.stride, padding=padding)
        return F.leaky_relu(y, 0.2)


def _blurred_kernel(w: torch.Tensor, blur: Blur) -> torch.Tensor:
    """(out, in, k, k) -> (out, in, k + 3, k + 3): the kernel of blur-then-conv as one conv (the
    blur's 4 x 4 kernel convolved with each k x k one; the blur kernel is symmetric)."""
    o, i, k, _ = w.shape
    b = blur.kernel.to(w.dtype)
    full = F.conv2d(F.pad(w.reshape(o * i, 1, k, k), (3, 3, 3, 3)), b.view(1, 1, 4, 4))
    return full.reshape(o, i, k + 3, k + 3)


class ResBlock(nn.Module):
    """(B, in, H, W) -> (B, out, floor(H / 2), floor(W / 2)).

    checkpoint_segments: activation checkpointing of each of its three layers (``nn.checkpointing``)."""

    checkpoint_segments = False

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = 1.0 / math.sqrt(2.0)  # (conv2(conv1(x)) + skip(x)) / sqrt(2), the gain inside the convs
        ck = self.checkpoint_segments
        return run_segment(ck, self.conv2, run_segment(ck, self.conv1, x), g) + run_segment(ck, self.skip, x, g)


def mbstd_group_size(batch: int, group: int) -> int:
    """The group size minibatch_stddev uses: ``group``, reduced until it divides the batch.
    Position p of the batch is in group p mod (batch / size)."""
    g = min(group, batch)
    while batch % g:
        g -= 1
    return g


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the std over groups of ``group`` samples, averaged (B, C + 1, H, W)."""
    B, C, H, W = x.shape
    g = mbstd_group_size(B, group)
    y = x.view(g, B // g, 1, C, H, W)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)
    y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (B // g, 1, 1, 1)
    y = y.repeat(g, 1, H, W)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """forward(img (B, 3, P, P)) -> (logit (B,), aux (B, aux_outputs)).

    checkpoint_segments: activation checkpointing of FromRGB (``nn.checkpointing``; training only,
    off by default; each ``ResBlock`` has its own flag for its three layers)."""

    checkpoint_segments = False

    def __init__(self, cfg: DiscriminatorConfig, patch_size: int):
        super().__init__()
        ch = cfg.channels
        self.from_rgb = ConvLayer(3, ch[0], 1)
        self.blocks = nn.Sequential(*[ResBlock(ch[i], ch[i + 1]) for i in range(len(ch) - 1)])
        size = patch_size
        for _ in range(len(ch) - 1):
            size //= 2
        if size < 1:
            raise ValueError(f"patch {patch_size} is too small for {len(ch) - 1} downsampling blocks")
        self.final_size = size
        self.mbstd_group = cfg.mbstd_group
        c = ch[-1]
        self.final_conv = ConvLayer(c + 1, c, 3)
        self.head = nn.Sequential(EqualLinear(c * size * size, c, activation=True), EqualLinear(c, 1))
        self.aux_head = nn.Sequential(EqualLinear(c * size * size, c, activation=True),
                                      EqualLinear(c, cfg.aux_outputs))

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, P, P) -> flattened features (B, C * s * s) of the final conv."""
        ck = self.checkpoint_segments
        x = run_segment(ck, self.from_rgb, img)
        x = self.blocks(x)  # each block checkpoints its layers
        x = minibatch_stddev(x, self.mbstd_group)
        return self.final_conv(x).flatten(1)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(img)
        return self.head(f).squeeze(1), self.aux_head(f)
