"""The random inputs of an iteration: latents, noises, coordinates, style mixing, path-length
directions (paper Section 3.5).

Every input of iteration t is drawn on the CPU from a generator seeded by (seed, t, phase) for
the GLOBAL batch, and each process takes its share (samples r, r + W, ...: ``rank_slice``). So the
inputs do not depend on the number of processes, and a resumed run draws what the uninterrupted
run drew.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..coords import sample_training_coords
from ..geometry import Geometry, PaddedGeometry
from ..parallel import env as dist_
from ..data.seeds import seeded_generator

PHASE_D, PHASE_G, PHASE_PL = 0, 1, 2


@dataclass
class FakeInputs:
    """Inputs of a batch of generated patches. zg (B, zg_dim), zl (B, zl_dim, S, S), coords
    (B, C, S, S), label (B,), noises [(B, 1, h, h)], zg_mix (B, zg_dim) or None, mix_index (B,)
    (n_styles = no mixing), pairs: per-process number of diversity pairs (j with j + pairs)."""

    zg: torch.Tensor
    zl: torch.Tensor
    coords: torch.Tensor
    label: torch.Tensor
    noises: list[torch.Tensor]
    zg_mix: torch.Tensor | None
    mix_index: torch.Tensor
    pairs: int = 0

    def take(self, sl: slice, device: torch.device, pairs: int = 0) -> "FakeInputs":
        def t(x):
            return None if x is None else x[sl].contiguous().to(device, non_blocking=True)

        return FakeInputs(t(self.zg), t(self.zl), t(self.coords), t(self.label),
                          [t(n) for n in self.noises], t(self.zg_mix), t(self.mix_index), pairs)


def sample_fake_inputs(cfg: ModelConfig, geometry: Geometry | PaddedGeometry, batch: int, gen: torch.Generator,
                       pair_half: int = 0, pair_own_phase: bool = False) -> FakeInputs:
    """Random inputs of ``batch`` (global) generated patches, drawn in a fixed order from ``gen``.

    pair_half > 0: samples [pair_half, 2 pair_half) copy zg, coordinates, label and style mixing
    of samples [0, pair_half) (diversity pairs; zl and noises stay independent).
    pair_own_phase (scenery coordinates): the second members keep their own horizontal phase
    (coordinate channels 1-2), copying only the vertical one: two places of one canvas.
    """
    g = cfg.generator
    n = g.ts_input
    size = n + 2 * geometry.gs_margin
    zg = torch.randn(batch, g.zg_dim, generator=gen)
    zl = torch.randn(batch, g.zl_dim, size, size, generator=gen)
    coords, label = sample_training_coords(g.coords, batch, size, generator=gen)
    noises = [torch.randn(batch, 1, h, h, generator=gen) for h in geometry.ts_sizes(n)]
    zg_mix = torch.randn(batch, g.zg_dim, generator=gen)
    do_mix = torch.rand(batch, generator=gen) < cfg.training.style_mixing
    cross = torch.randint(1, max(g.n_styles, 2), (batch,), generator=gen)
    mix_index = torch.where(do_mix, cross, torch.full_like(cross, g.n_styles))
    if pair_half > 0:
        h = pair_half
        own_phase = pair_own_phase and g.coords.system == "scenery"
        for t in (zg, label, zg_mix, mix_index):
            t[h:2 * h] = t[:h]
        if own_phase:
            coords[h:2 * h, :1] = coords[:h, :1]
        else:
            coords[h:2 * h] = coords[:h]
    if cfg.training.style_mixing <= 0:
        zg_mix = None
    return FakeInputs(zg, zl, coords, label, noises, zg_mix, mix_index)


@dataclass
class BatchPlan:
    """How the global batch of an iteration is drawn and shared between processes.

    B = global batch, b = B / W per process; this process takes samples ``sl`` (r, r + W, ...);
    diversity pairs: global i <-> i + pair_half (pair_half = W * (b // 2), 0 = no pairs);
    path length: pl_batch = W * max(1, b // pl_batch_shrink) samples; pair_own_phase: the pairs
    differ in horizontal phase too (``sample_fake_inputs``).
    """

    cfg: ModelConfig
    geometry: Geometry | PaddedGeometry
    seed: int
    batch: int
    world: int
    sl: slice
    pair_half: int
    pl_batch: int
    device: torch.device
    pair_own_phase: bool = False

    @classmethod
    def make(cls, cfg: ModelConfig, geometry: Geometry | PaddedGeometry, seed: int, ctx: dist_.DistContext,
             pairs: bool, own_phase: bool = False) -> "BatchPlan":
        W = ctx.world_size
        b = cfg.training.batch_size // W
        b_pl = max(1, b // max(cfg.training.pl_batch_shrink, 1))
        return cls(cfg, geometry, seed, b * W, W, dist_.rank_slice(ctx), W * (b // 2) if pairs else 0,
                   b_pl * W, ctx.device, own_phase)

    def d_inputs(self, t: int) -> FakeInputs:
        gen = seeded_generator(self.seed, t, PHASE_D, 0x1AF1)
        return sample_fake_inputs(self.cfg, self.geometry, self.batch, gen).take(self.sl, self.device)

    def g_inputs(self, t: int) -> FakeInputs:
        gen = seeded_generator(self.seed, t, PHASE_G, 0x1AF1)
        x = sample_fake_inputs(self.cfg, self.geometry, self.batch, gen, self.pair_half, self.pair_own_phase)
        return x.take(self.sl, self.device, pairs=self.pair_half // self.world)

    def pl_inputs(self, t: int) -> tuple[FakeInputs, torch.Tensor]:
        """Inputs and image-space directions y ~ N(0, 1) / sqrt(P^2) of the path-length batch."""
        gen = seeded_generator(self.seed, t, PHASE_PL, 0x1AF1)
        x = sample_fake_inputs(self.cfg, self.geometry, self.pl_batch, gen)
        P = self.cfg.generator.patch_size
        y = torch.randn(self.pl_batch, 3, P, P, generator=gen) / math.sqrt(P * P)
        return x.take(self.sl, self.device), y[self.sl].contiguous().to(self.device)
