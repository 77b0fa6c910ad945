"""Structure synthesizer GS (paper Section 3.2): an implicit function of zg, zl and coordinates.

Each of the L layers concatenates the coordinates (center-cropped to the current size) to the
features and applies a padding-free modulated, demodulated k x k conv ("feature unfolding",
7x7 in the paper) modulated by the RAW global latent zg, then bias + leaky ReLU. No noise.

Shapes (paper-101): zl (B, 256, 35, 35) -> 29 -> 23 -> 17 -> zS (B, 256, 11, 11).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import GeneratorConfig
from .nn import FusedLeakyReLU, ModulatedConv2d, center_crop
from .nn.checkpointing import run_segment


class StructureLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, demodulate=True)
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x, style))


class StructureSynthesizer(nn.Module):
    """GS. forward(zg, zl, coords) -> zS.

    zg: (1 or B, zg_dim), or per-pixel (B, zg_dim, H, W) at zl's resolution (style fusion).
    zl: (B, zl_dim, H, W); coords: (1 or B, C_coord, H, W).
    Returns zS (B, gs_channels, H - 2 L r, W - 2 L r).
    checkpoint_segments: activation checkpointing of each layer (``nn.checkpointing``; training
    only, off by default).
    """

    checkpoint_segments = False

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        cc = cfg.coords.channels
        layers = []
        in_ch = cfg.zl_dim
        for _ in range(cfg.gs_layers):
            layers.append(StructureLayer(in_ch + cc, cfg.gs_channels, cfg.gs_kernel, cfg.zg_dim))
            in_ch = cfg.gs_channels
        self.layers = nn.ModuleList(layers)

    def forward(self, zg: torch.Tensor, zl: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        x = zl
        for layer in self.layers:
            x = run_segment(self.checkpoint_segments, layer, x, coords, zg, fn=_with_coords(layer))
        return x


def _with_coords(layer: StructureLayer):
    """x, coords, zg -> layer(x with the coordinates cropped to its size appended, zg)."""
    def run(x: torch.Tensor, coords: torch.Tensor, zg: torch.Tensor) -> torch.Tensor:
        c = center_crop(coords, x.shape[-2], x.shape[-1]).to(x.dtype)
        if c.shape[0] != x.shape[0]:
            c = c.expand(x.shape[0], -1, -1, -1)
        return layer(torch.cat([x, c], dim=1), zg)
    return run
