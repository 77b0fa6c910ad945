"""InfinityGAN generator (paper Figure 2): mapping + structure synthesizer GS + texture synthesizer GT.

    zg --(raw)--------------------------> GS (modulation)
    zl (B, zl_dim, n + 2m, n + 2m) + coords --> GS --> zS (B, gs_ch, n, n)
    zg --> mapping --> w (W+, n_styles) --> GT (modulation); zS --> GT --> RGB (B, 3, P, P)

with m = GS margin (12 cells) and P = 2^K n - 5 (2^K - 1) (101 for n = 11, K = 4).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .config import GeneratorConfig
from .geometry import Geometry, PaddedGeometry
from .structure import StructureSynthesizer
from .texture import MappingNetwork, TextureSynthesizer


#: generator architectures: InfinityGAN and the two ablation baselines of paper Table 1
#: (StyleGAN2 + non-constant input, zero-padded; and + padding-free generator), both without GS.
ARCHS = ("infinitygan", "stylegan2-nci", "stylegan2-nci-pfg")


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.arch not in ARCHS:
            raise ValueError(f"unknown generator arch {cfg.arch!r} (choose from {', '.join(ARCHS)})")
        if cfg.arch != "infinitygan" and (cfg.gs_layers != 0 or cfg.gs_channels != cfg.zl_dim):
            raise ValueError(f"{cfg.arch} has no structure synthesizer: gs_layers 0, gs_channels = zl_dim")
        self.cfg = cfg
        padded = cfg.arch == "stylegan2-nci"
        self.geometry = PaddedGeometry(cfg.n_up) if padded else Geometry(cfg.n_up, cfg.gs_layers, cfg.gs_kernel)
        self.mapping = MappingNetwork(cfg)
        self.structure = StructureSynthesizer(cfg)
        self.texture = TextureSynthesizer(cfg, padded=padded)

    @property
    def n_styles(self) -> int:
        return self.cfg.n_styles

    def styles(self, zg: torch.Tensor, zg_mix: torch.Tensor | None = None,
               mix_index: int | torch.Tensor | None = None) -> torch.Tensor:
        """W+ styles (B, n_styles, style_dim) from zg (B, zg_dim).

        With ``zg_mix`` and ``mix_index`` k (int, or (B,) per sample), slots [0, k) use
        mapping(zg) and slots [k, n_styles) use mapping(zg_mix) (style mixing).
        """
        w = self.mapping(zg)
        ws = w.unsqueeze(1).expand(-1, self.n_styles, -1)
        if zg_mix is None or mix_index is None:
            return ws
        w2 = self.mapping(zg_mix).unsqueeze(1).expand(-1, self.n_styles, -1)
        idx = torch.arange(self.n_styles, device=w.device).view(1, -1, 1)
        k = torch.as_tensor(mix_index, device=w.device).reshape(-1, 1, 1)
        return torch.where(idx < k, ws, w2)

    def random_noises(self, batch: int, n_rows: int, n_cols: int | None = None,
                      device=None, dtype=torch.float32) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise for every GT conv of a zS window of n_rows x n_cols."""
        n_cols = n_rows if n_cols is None else n_cols
        hs, ws = self.geometry.ts_sizes(n_rows), self.geometry.ts_sizes(n_cols)
        return [torch.randn(batch, 1, h, w, device=device, dtype=dtype) for h, w in zip(hs, ws)]

    def forward(self, zg: torch.Tensor, zl: torch.Tensor, coords: torch.Tensor,
                noises: Sequence[torch.Tensor | None] | None = None, styles: torch.Tensor | None = None,
                zg_mix: torch.Tensor | None = None, mix_index=None) -> dict:
        """Synthesize from explicit inputs.

        zg: (B or 1, zg_dim) raw global latent (modulates GS), or per pixel (B, zg_dim, H, W).
        zl: (B, zl_dim, n + 2m, n' + 2m); coords: (B or 1, C, n + 2m, n' + 2m).
        noises: list of 2K noise maps, or None for fresh random noise.
        styles: W+ (B or 1, n_styles, style_dim) or a per-slot list; default mapping(zg).
        Returns {"rgb": (B, 3, P, P'), "zs": (B, gs_ch, n, n')}.
        """
        zs = self.structure(zg, zl, coords)
        if styles is None:
            styles = self.styles(zg, zg_mix, mix_index)
        if noises is None:
            noises = self.random_noises(zs.shape[0], zs.shape[-2], zs.shape[-1], zs.device, zs.dtype)
        rgb = self.texture(zs, styles, noises)
        return {"rgb": rgb, "zs": zs}
