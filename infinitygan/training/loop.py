"""The InfinityGAN training loop (paper Section 3.5; facts file "Training").

One iteration t (0-based; the run's iteration counter is t + 1 afterwards):

1. D step: logistic loss on a real batch and a fake batch (G under no_grad) + the auxiliary
   L1 loss of the vertical coordinate on real (label: the crop's row offset) and fake (label:
   the sampled window start) images, weight ``aux_weight``.
2. Lazy R1 every ``r1_every`` iterations on the same real batch, weight r1_gamma / 2 * r1_every
   (a separate optimizer step, as in StyleGAN2).
3. G step: non-saturating loss + aux on fake + the diversity loss on GS's output zS (sample j of
   the first half of a process's batch is paired with sample j + b/2: same zg, style mix and
   coordinates, different zl; the per-sample GT noises stay independent since they do not enter
   GS).
4. Lazy path-length regularization every ``pl_every`` iterations on batch // pl_batch_shrink
   samples, weight pl_weight * pl_every, decay pl_decay, gradient w.r.t. GT's W+ styles.
5. G EMA update with ``ema_decay``.

Style mixing with probability ``style_mixing`` (per sample; crossover uniform in [1, n_styles-1])
for every fake batch. Adam with lr * r, betas (0, 0.99 ** r), r = every / (every + 1).
Baselines: ``gs_layers == 0`` -> no diversity loss; ``gs_layers == 0`` or object coordinates ->
the auxiliary head is trained on real images only.

Reproducibility. Every random input of iteration t (latents, noises, coordinates, style mixing,
path-length directions) is drawn on the CPU from ``torch.Generator``s seeded by (seed, t, phase)
for the GLOBAL batch, and each process takes its share (``distributed.rank_slice``: samples r,
r + W, ...). The data order is a function of (seed, epoch) (``DistributedSampler``) and the crops
of (seed, epoch, index) (``PatchDataset``); the position of iteration t is epoch t // E, batch
t % E (E = batches per epoch), restored by skipping sampler indices, not by loading data. So a
resumed run needs only the checkpoint (weights, Adam state, EMA, iteration, path-length mean),
and in deterministic CPU mode it reproduces the uninterrupted run exactly.

Data parallelism. With W processes (torchrun), G and D are wrapped in DistributedDataParallel;
each process computes the losses of its b = B / W samples and DDP averages the gradients, so the
update equals the one-process update of the same global batch up to float rounding:

* the R1 and path-length penalties use ``autograd.grad(create_graph=True)``; their backward
  passes go through the DDP-wrapped forward, and zero-weighted terms (``0 * output.sum()``) put
  every parameter in the graph, so DDP's hooks fire for all of them and the gradients are
  averaged like any other;
* the path-length running mean uses the mean length over all processes (all-reduce);
* minibatch stddev: D's groups are strided (group g = samples c, c + B/g, ...); because each
  process holds the interleaved samples r, r + W, ..., the one-process groups of size g are
  exactly the union of the processes' groups whenever ``mbstd_group`` divides b. If it does not,
  D uses smaller groups in each process (still valid, no longer equal to one process);
* diversity pairs are formed inside each process's share (global sample i with i + W * (b // 2)),
  i.e. i with i + B / 2 when b is even: the same pairs for every world size.

Non-finite guard: an optimizer step whose loss or gradients (after all-reduce) are not finite is
skipped (counted and logged); after ``max_nonfinite`` consecutive iterations with a skipped step
the run stops with a UserError naming the last good checkpoint.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..api import build_generator, resolve_device
from ..config import ModelConfig
from ..coords import sample_training_coords
from ..discriminator import Discriminator
from ..errors import UserError
from ..io import runs
from ..io.images import save_image
from . import distributed as dist_
from . import losses as L
from . import state as S
from .data import PatchDataset, make_loader, open_dataset

log_ = logging.getLogger(__name__)

PHASE_D, PHASE_G, PHASE_PL = 0, 1, 2
#: canvas seeds of the sample grids (fixed latents: the same images every time)
SAMPLE_SEEDS = (0, 1, 2, 3)
#: fov multiplier of the wide row of the sample grids
SAMPLE_FOV = 4
MAX_NONFINITE = 20
#: statistics shown on the progress bar
POSTFIX = ("loss/d_total", "loss/g_total", "reg/r1", "reg/path_length", "loss/diversity")


# ============================================================================ random inputs
def phase_generator(seed: int, iteration: int, phase: int) -> torch.Generator:
    """The CPU generator of one phase of one iteration: a function of (seed, iteration, phase)."""
    ss = np.random.SeedSequence([int(seed) & ((1 << 63) - 1), int(iteration), int(phase), 0x1AF1])
    g = torch.Generator()
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return g


@dataclass
class FakeInputs:
    """Inputs of a batch of generated patches. zg (B, zg_dim), zl (B, zl_dim, S, S), coords
    (B, C, S, S), label (B,), noises [(B, 1, h, h)], zg_mix (B, zg_dim) or None, mix_index (B,)
    (n_styles = no mixing)."""

    zg: torch.Tensor
    zl: torch.Tensor
    coords: torch.Tensor
    label: torch.Tensor
    noises: list[torch.Tensor]
    zg_mix: torch.Tensor | None
    mix_index: torch.Tensor
    pairs: int = 0  # per-process number of diversity pairs (samples j and j + pairs)

    def take(self, sl: slice, device: torch.device, pairs: int = 0) -> "FakeInputs":
        def t(x):
            return None if x is None else x[sl].contiguous().to(device, non_blocking=True)

        return FakeInputs(t(self.zg), t(self.zl), t(self.coords), t(self.label),
                          [t(n) for n in self.noises], t(self.zg_mix), t(self.mix_index), pairs)


def sample_fake_inputs(cfg: ModelConfig, geometry, batch: int, gen: torch.Generator,
                       pair_half: int = 0) -> FakeInputs:
    """Random inputs of ``batch`` (global) generated patches, drawn in a fixed order from ``gen``.

    pair_half > 0: samples [pair_half, 2 pair_half) copy zg, coordinates, label and style mixing
    of samples [0, pair_half) (diversity pairs; zl and noises stay independent).
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
        for t in (zg, coords, label, zg_mix, mix_index):
            t[h:2 * h] = t[:h]
    if cfg.training.style_mixing <= 0:
        zg_mix = None
    return FakeInputs(zg, zl, coords, label, noises, zg_mix, mix_index)


class GeneratorStep(nn.Module):
    """G's training forward: (rgb (B, 3, P, P), zS (B, C, n, n), W+ styles (B, n_styles, D)).

    A module so that DDP sees the whole forward, styles included (path length needs them).
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.g = generator

    def forward(self, zg, zl, coords, noises, zg_mix=None, mix_index=None):
        styles = self.g.styles(zg, zg_mix, mix_index)
        out = self.g(zg, zl, coords, list(noises), styles=styles)
        return out["rgb"], out["zs"], styles


def run_generator(step: nn.Module, x: FakeInputs):
    return step(x.zg, x.zl, x.coords, x.noises, x.zg_mix, x.mix_index)


# ================================================================================ helpers
def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def all_finite(loss: torch.Tensor, params: list[nn.Parameter]) -> bool:
    """True iff the loss and every gradient are finite (one host sync)."""
    parts = [loss.detach().float().reshape(1)]
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        parts.append(torch.stack(torch._foreach_norm(grads)).float())
    return bool(torch.isfinite(torch.cat(parts)).all().item())


def lazy_ratio(every: int) -> float:
    return every / (every + 1) if every > 0 else 1.0


def make_adam(params, lr: float, every: int) -> torch.optim.Adam:
    r = lazy_ratio(every)
    return torch.optim.Adam(params, lr=lr * r, betas=(0.0, 0.99 ** r))


def fingerprint(*modules: nn.Module) -> str:
    """sha256 of every parameter's bytes (identical on all ranks iff the replicas agree)."""
    h = hashlib.sha256()
    for m in modules:
        for t in m.state_dict().values():
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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


@dataclass
class Progress:
    iteration: int = 0
    pl_mean: float = 0.0
    nan_skips: int = 0
    nan_streak: int = 0
    skipped: dict = field(default_factory=lambda: {"d": 0, "r1": 0, "g": 0, "pl": 0})


class Stats:
    """Running sums of scalar statistics between two log points (reduced over processes).

    Values stay on the device until :meth:`reduce` (no host sync per iteration).
    """

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, **kv) -> None:
        for k, v in kv.items():
            v = v.detach().float().reshape(()) if torch.is_tensor(v) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def running(self, keys) -> dict[str, str]:
        """This process's means since the last log point, formatted for the progress bar."""
        return {k.split("/")[-1]: f"{float(self.sums[k]) / self.counts[k]:.3g}" for k in keys if k in self.sums}

    def reduce(self, ctx: dist_.DistContext) -> dict[str, float]:
        keys = sorted(self.sums)
        vals = torch.tensor([float(self.sums[k]) / self.counts[k] for k in keys], dtype=torch.float64)
        if ctx.distributed and keys:
            vals = dist_.all_reduce_mean(ctx, vals.to(ctx.device)).cpu()
        self.sums.clear()
        self.counts.clear()
        return {k: float(v) for k, v in zip(keys, vals.tolist())}


# ============================================================================ the steps
def _autocast(device: torch.device, amp: str | None):
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Steps:
    """The four optimisation steps of an iteration (D, R1, G, path length) and their guard."""

    def __init__(self, cfg: ModelConfig, nets: Nets, ctx: dist_.DistContext, amp: str | None,
                 progress: Progress, stats: Stats):
        self.cfg, self.nets, self.ctx, self.amp = cfg, nets, ctx, amp
        self.progress, self.stats = progress, stats
        g = cfg.generator
        self.fake_aux = g.gs_layers > 0 and g.coords.system != "object"
        self.use_diversity = g.gs_layers > 0 and cfg.training.diversity_weight != 0
        V = g.coords.train_vertical_positions
        self.aux_tol = 1.0 / max(V - 1, 1)  # half the spacing of the fake labels

    def _finish(self, name: str, loss: torch.Tensor, params: list, optim) -> bool:
        ok = all_finite(loss, params)
        ok = dist_.all_true(self.ctx, ok)
        if ok:
            optim.step()
        else:
            self.progress.nan_skips += 1
            self.progress.skipped[name] += 1
        optim.zero_grad(set_to_none=True)
        return ok

    def _aux_stats(self, prefix: str, aux: torch.Tensor, label: torch.Tensor) -> dict:
        err = (aux[:, 0].detach().float() - label.float()).abs()
        return {f"aux/{prefix}_error": err.mean(), f"aux/{prefix}_accuracy": (err < self.aux_tol).float().mean()}

    def d_step(self, real: torch.Tensor, real_label: torch.Tensor, fake_in: FakeInputs) -> bool:
        n, tc, dev = self.nets, self.cfg.training, self.ctx.device
        requires_grad(n.G, False)
        requires_grad(n.D, True)
        with torch.no_grad(), _autocast(dev, self.amp):
            fake = run_generator(n.g_step_raw, fake_in)[0]
        with _autocast(dev, self.amp):
            real_logit, real_aux = n.d_fwd(real)
            fake_logit, fake_aux = n.d_fwd(fake.detach())
        adv = L.d_logistic_loss(real_logit, fake_logit)
        aux_real = L.aux_vertical_loss(real_aux, real_label)
        loss = adv + tc.aux_weight * aux_real
        aux_fake = None
        if self.fake_aux:
            aux_fake = L.aux_vertical_loss(fake_aux, fake_in.label)
            loss = loss + tc.aux_weight * aux_fake
        # every D parameter in the graph (DDP without find_unused_parameters)
        loss = loss + 0.0 * (real_aux.float().sum() + fake_aux.float().sum())
        loss.backward()
        ok = self._finish("d", loss, n.d_params, n.d_optim)
        st = {"loss/d_adv": adv, "loss/d_aux_real": aux_real, "loss/d_total": loss,
              "d/real_logit": real_logit.detach().float().mean(),
              "d/fake_logit": fake_logit.detach().float().mean()}
        st.update(self._aux_stats("real", real_aux, real_label))
        if self.cfg.generator.coords.system != "object":
            st.update(self._aux_stats("fake", fake_aux, fake_in.label))
        if aux_fake is not None:
            st["loss/d_aux_fake"] = aux_fake
        self.stats.add(**st)
        return ok

    def r1_step(self, real: torch.Tensor) -> bool:
        n, tc, dev = self.nets, self.cfg.training, self.ctx.device
        requires_grad(n.G, False)
        requires_grad(n.D, True)
        real = real.detach().requires_grad_(True)
        with _autocast(dev, self.amp):
            logit, aux = n.d_fwd(real)
        r1 = L.r1_penalty(logit, real)
        loss = tc.r1_gamma / 2.0 * tc.r1_every * r1 + 0.0 * (logit.float().sum() + aux.float().sum())
        loss.backward()
        ok = self._finish("r1", loss, n.d_params, n.d_optim)
        self.stats.add(**{"reg/r1": r1})
        return ok

    def g_step(self, fake_in: FakeInputs) -> bool:
        n, tc, dev = self.nets, self.cfg.training, self.ctx.device
        requires_grad(n.G, True)
        requires_grad(n.D, False)
        with _autocast(dev, self.amp):
            rgb, zs, styles = run_generator(n.g_step, fake_in)
            logit, aux = n.D(rgb)  # the raw D: its gradients are not needed here
        adv = L.g_nonsaturating_loss(logit)
        loss = adv
        st = {"loss/g_adv": adv}
        if self.fake_aux:
            aux_l = L.aux_vertical_loss(aux, fake_in.label)
            loss = loss + tc.aux_weight * aux_l
            st["loss/g_aux"] = aux_l
        k = fake_in.pairs
        if self.use_diversity and k > 0:
            div = L.diversity_loss(fake_in.zl[:k], fake_in.zl[k:2 * k], zs[:k], zs[k:2 * k])
            loss = loss + tc.diversity_weight * div
            st["loss/diversity"] = div
        loss = loss + 0.0 * (rgb.float().sum() + zs.float().sum())
        loss.backward()
        ok = self._finish("g", loss, n.g_params, n.g_optim)
        st["loss/g_total"] = loss
        self.stats.add(**st)
        return ok

    def pl_step(self, fake_in: FakeInputs, direction: torch.Tensor) -> bool:
        n, tc, dev = self.nets, self.cfg.training, self.ctx.device
        requires_grad(n.G, True)
        requires_grad(n.D, False)
        with _autocast(dev, self.amp):
            rgb, zs, styles = run_generator(n.g_step, fake_in)
        pen, new_mean, lengths = L.path_length_penalty(
            rgb, styles, self.progress.pl_mean, tc.pl_decay, noise=direction,
            reduce_mean=lambda m: dist_.all_reduce_mean(self.ctx, m))
        loss = tc.pl_weight * tc.pl_every * pen + 0.0 * (rgb.float().sum() + zs.float().sum())
        loss.backward()
        ok = self._finish("pl", loss, n.g_params, n.g_optim)
        if ok:
            self.progress.pl_mean = float(new_mean.item())
        self.stats.add(**{"reg/path_length": lengths.mean(), "reg/pl_penalty": pen,
                          "reg/pl_mean": self.progress.pl_mean})
        return ok


# ================================================================================ data
class _SkipFirst(torch.utils.data.Sampler):
    """Wraps a (distributed) sampler; the next pass skips its first ``skip`` indices (resume)."""

    def __init__(self, inner):
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        it = iter(self.inner)
        for _ in range(skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return len(self.inner)


def batches_from(loader, steps_per_epoch: int, start_iteration: int) -> Iterator:
    """Batches of iterations start_iteration, start_iteration + 1, ... (epoch / offset arithmetic)."""
    epoch, offset = divmod(int(start_iteration), steps_per_epoch)
    skipper = _SkipFirst(loader.sampler.sampler)
    loader.sampler.sampler = skipper
    while True:
        loader.sampler.set_epoch(epoch)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        skipper.skip = offset * loader.batch_size
        for batch in loader:
            yield batch
        epoch, offset = epoch + 1, 0


# ============================================================================= logging
class RunLog:
    """TensorBoard scalars (rank 0; a warning and nothing else if tensorboard is missing)."""

    _warned = False

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # ImportError, or a broken tensorboard install
            if not RunLog._warned:
                warnings.warn("tensorboard is not installed: no training logs "
                              "(pip install tensorboard)", stacklevel=2)
                RunLog._warned = True
            return
        self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def render_sample_grid(g_ema: nn.Module, cfg: ModelConfig, device: torch.device,
                       seeds=SAMPLE_SEEDS, fov: int = SAMPLE_FOV, gap: int = 4) -> np.ndarray:
    """Float (H, W, 3) grid: for each seed a column of cells fov*P wide; top row the training
    field of view (P x P, centred above), bottom row fov x the field of view (fov*P x P) of the
    same canvas and place (the top patch equals the centre of the strip below)."""
    from ..latents import Canvas
    from ..synthesis import Region, Synthesizer, horizon_centered_y

    P = cfg.generator.patch_size
    W = fov * P
    synth = Synthesizer(g_ema, device)
    y = horizon_centered_y(P)
    grid = np.full((2 * P + gap, len(seeds) * (W + gap) - gap, 3), 1.0, np.float32)
    for i, s in enumerate(seeds):
        canvas = Canvas(int(s), cfg.generator.zg_dim, cfg.generator.zl_dim)
        x0 = i * (W + gap)
        px = -(P // 2)
        patch = synth.render(canvas, Region(px, y, P, P))
        strip = synth.render(canvas, Region(-(W // 2), y, W, P))
        off = px + W // 2
        grid[:P, x0 + off: x0 + off + P] = patch
        grid[P + gap:, x0: x0 + W] = strip
    return grid


# ============================================================================ the setup
def cpu_threads(workers: int, ctx: dist_.DistContext) -> int:
    """Intra-op threads of a CPU training process.

    OMP_NUM_THREADS, when set, wins. Otherwise the cores this process may use are shared by the
    local training processes and their data-loader workers: max(1, cores // local processes -
    workers). Oversubscribed OpenMP threads spin on their barriers, which made a 2-core machine
    5-20x slower in our measurements, while the (procedural or decoded) data costs little.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size if ctx.distributed else 1))
    return max(1, cores // max(local, 1) - int(workers))


def _ddp_buffer_kwargs() -> dict:
    """No buffer broadcast at every forward (G and D have no state buffers to keep in sync);
    the keyword changed name in recent PyTorch."""
    import inspect

    params = inspect.signature(DDP.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


_NO_BUFFER_SYNC = _ddp_buffer_kwargs()
# DDP's reducer warns (once per process) when a gradient's strides differ from its bucket's
# (e.g. the grad of a (1, C) linear weight): a performance hint, not an error.
warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def resolve_training_config(cfg: ModelConfig, batch_size: int | None = None, iterations: int | None = None,
                            checkpoint_every: int | None = None, sample_every: int | None = None,
                            log_every: int | None = None) -> ModelConfig:
    """A copy of cfg with the command-line overrides applied (what RUN/config.yaml stores)."""
    over = {k: v for k, v in dict(batch_size=batch_size, iterations=iterations, checkpoint_every=checkpoint_every,
                                   sample_every=sample_every, log_every=log_every).items() if v is not None}
    for k, v in over.items():
        if int(v) < 1:
            raise UserError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    return replace(cfg, training=replace(cfg.training, **{k: int(v) for k, v in over.items()}))


@dataclass
class BatchPlan:
    """How the global batch of an iteration is drawn and shared between processes.

    B = global batch, b = B / W per process; this process takes samples ``sl`` (r, r + W, ...);
    diversity pairs: global i <-> i + pair_half (pair_half = W * (b // 2), 0 = no pairs);
    path length: pl_batch = W * max(1, b // pl_batch_shrink) samples.
    """

    batch: int
    world: int
    sl: slice
    pair_half: int
    pl_batch: int
    device: torch.device

    @classmethod
    def make(cls, cfg: ModelConfig, ctx: dist_.DistContext, per_process: int, diversity: bool) -> "BatchPlan":
        W, b = ctx.world_size, per_process
        b_pl = max(1, b // max(cfg.training.pl_batch_shrink, 1))
        return cls(b * W, W, dist_.rank_slice(ctx), W * (b // 2) if diversity else 0, b_pl * W, ctx.device)

    def d_inputs(self, cfg: ModelConfig, geometry, seed: int, t: int) -> FakeInputs:
        g = phase_generator(seed, t, PHASE_D)
        return sample_fake_inputs(cfg, geometry, self.batch, g).take(self.sl, self.device)

    def g_inputs(self, cfg: ModelConfig, geometry, seed: int, t: int) -> FakeInputs:
        g = phase_generator(seed, t, PHASE_G)
        x = sample_fake_inputs(cfg, geometry, self.batch, g, self.pair_half)
        return x.take(self.sl, self.device, pairs=self.pair_half // self.world)

    def pl_inputs(self, cfg: ModelConfig, geometry, seed: int, t: int) -> tuple[FakeInputs, torch.Tensor]:
        """Inputs and image-space directions y ~ N(0, 1) / sqrt(P^2) of the path-length batch."""
        g = phase_generator(seed, t, PHASE_PL)
        x = sample_fake_inputs(cfg, geometry, self.pl_batch, g)
        P = cfg.generator.patch_size
        y = torch.randn(self.pl_batch, 3, P, P, generator=g) / math.sqrt(P * P)
        return x.take(self.sl, self.device), y[self.sl].contiguous().to(self.device)


def build_nets(cfg: ModelConfig, ctx: dist_.DistContext, seed: int,
               ckpt: tuple[dict, dict] | None) -> tuple[Nets, Progress]:
    """G (via ``api.build_generator``), D, G_ema, Adam optimizers, DDP wrappers; initial weights
    from ``seed``, or everything from a checkpoint (tensors, metadata)."""
    tc, dev = cfg.training, ctx.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            G = build_generator(cfg)
        except ValueError as e:
            raise UserError(f"cannot train this config: {e}") from None
        D = Discriminator(cfg.discriminator, cfg.generator.patch_size)
    G_ema = copy.deepcopy(G)
    prog = Progress()
    if ckpt is not None:
        state, meta = ckpt
        G.load_state_dict(runs.sub_state(state, runs.G))
        D.load_state_dict(runs.sub_state(state, runs.D))
        G_ema.load_state_dict(runs.sub_state(state, runs.G_EMA))
        prog.iteration = int(meta["iteration"])
        prog.pl_mean = float(state["pl_mean"].item()) if "pl_mean" in state else 0.0
        info = json.loads(meta.get("progress", "{}"))
        prog.nan_skips = int(info.get("nan_skips", 0))
        prog.skipped.update(info.get("skipped", {}))
    G.to(dev).train()
    D.to(dev).train()
    G_ema.to(dev).eval()
    requires_grad(G_ema, False)
    g_params, d_params = list(G.parameters()), list(D.parameters())
    g_optim = make_adam(g_params, tc.lr, tc.pl_every)
    d_optim = make_adam(d_params, tc.lr, tc.r1_every)
    if ckpt is not None:
        S.load_optimizer_tensors(g_optim, g_params, ckpt[0], "g_optim")
        S.load_optimizer_tensors(d_optim, d_params, ckpt[0], "d_optim")
    g_step_raw = GeneratorStep(G)
    g_step, d_fwd = g_step_raw, D
    if ctx.distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        g_step = DDP(g_step_raw, device_ids=ids, **_NO_BUFFER_SYNC)
        d_fwd = DDP(D, device_ids=ids, **_NO_BUFFER_SYNC)
    return Nets(G, D, G_ema, g_step, g_step_raw, d_fwd, g_optim, d_optim, g_params, d_params), prog


def checkpoint_tensors(nets: Nets, prog: Progress) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in (("g", nets.G), ("d", nets.D), ("g_ema", nets.G_ema)):
        out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    out.update(S.optimizer_tensors(nets.g_optim, nets.g_params, "g_optim"))
    out.update(S.optimizer_tensors(nets.d_optim, nets.d_params, "d_optim"))
    out["pl_mean"] = torch.tensor(prog.pl_mean, dtype=torch.float32)
    return out


# ============================================================================== train
def train(cfg: ModelConfig, data: str, run_dir: str | Path, iterations: int | None = None,
          resume: bool = False, seed: int | None = None, device: str = "auto", workers: int = 2,
          amp: str | None = None, batch_size: int | None = None, checkpoint_every: int | None = None,
          sample_every: int | None = None, log_every: int | None = None, deterministic: bool = False,
          progress_bar: bool = True, max_nonfinite: int = MAX_NONFINITE, samples: bool = True) -> dict:
    """Train (or resume) a run; returns a summary dict.

    cfg: model + training config (``load_config``); overrides (batch_size, iterations, *_every)
    are applied on top and stored in RUN/config.yaml. ``iterations`` is the run's total (default
    cfg.training.iterations). ``seed`` (default 0, or the run's seed on resume) seeds the
    initial weights, every random input and the data order. ``data``: "procedural" (its images
    do not depend on the seed), an image folder or an LMDB (``open_dataset``). ``amp``: None /
    "none" (fp32) or "bf16" (autocast). Distributed when launched by torchrun (WORLD_SIZE > 1).
    ``max_nonfinite``: consecutive iterations with a skipped step before giving up.
    ``samples``: write sample grids.

    Returns {"iteration", "images_seen", "checkpoint", "nan_skips", "seconds_per_iteration",
    "fingerprint", "rank", "world_size"} (fingerprint: sha256 of this rank's G, D, G_ema).
    """
    run = Path(run_dir)
    amp = None if amp in (None, "none", "fp32") else amp
    if amp not in (None, "bf16"):
        raise UserError(f"unknown --amp {amp!r} (none, bf16)")
    if workers < 0:
        raise UserError(f"--workers must be >= 0, got {workers}")
    if max_nonfinite < 1:
        raise ValueError("max_nonfinite must be >= 1")
    cfg = resolve_training_config(cfg, batch_size, iterations, checkpoint_every, sample_every, log_every)
    tc = cfg.training

    # ---- the run directory, before building anything -----------------------------------------
    S.check_writable_dir(run)
    existing = runs.list_checkpoints(run)
    ckpt = None
    if resume:
        if not existing:
            raise UserError(f"nothing to resume: {run} has no checkpoint")
        _, state, ckpt_cfg, meta = runs.load_newest_checkpoint(run)
        S.check_resume_config(run, cfg, ckpt_cfg)
        run_seed = int(meta.get("seed", 0))
        if seed is not None and int(seed) != run_seed:
            raise UserError(f"cannot resume {run} with --seed {seed}: the run was started with seed {run_seed}")
        seed, ckpt = run_seed, (state, meta)
    elif existing:
        raise UserError(f"{run} already holds checkpoints: use --resume to continue it, or another --out")
    seed = 0 if seed is None else int(seed)

    dev = resolve_device(device)
    _, world, _ = dist_.env_world()
    if tc.batch_size % world:
        raise UserError(f"global batch {tc.batch_size} is not divisible by the {world} processes")
    # ---- data: missing / empty folders are reported before any process group -------------------
    dataset = open_dataset(data, tc.full_size, tc.pre_resize, seed=0)
    if tc.full_size < cfg.generator.patch_size:
        raise UserError(f"full_size {tc.full_size} is smaller than the patch size {cfg.generator.patch_size}")

    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    ctx = dist_.setup(dev)
    try:
        if ctx.device.type == "cpu":
            torch.set_num_threads(cpu_threads(workers, ctx))
        return _run(cfg, dataset, run, seed, ctx, workers, amp, ckpt, progress_bar, max_nonfinite, samples)
    finally:
        torch.set_num_threads(prev_threads)
        dist_.teardown(ctx)
        if deterministic:
            torch.use_deterministic_algorithms(prev_det)


def _run(cfg: ModelConfig, dataset, run: Path, seed: int, ctx: dist_.DistContext, workers: int,
         amp: str | None, ckpt, progress_bar: bool, max_nonfinite: int, samples: bool) -> dict:
    tc, total = cfg.training, cfg.training.iterations
    b = tc.batch_size // ctx.world_size
    if ctx.is_main:
        for sub in ("checkpoints", "logs", "samples"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        S.remove_stray_parts(run)
        S.write_config(run, cfg)
    dist_.barrier(ctx)

    nets, prog = build_nets(cfg, ctx, seed, ckpt)
    del ckpt
    if ctx.distributed and ctx.is_main and cfg.discriminator.mbstd_group > 1 and b % cfg.discriminator.mbstd_group:
        warnings.warn(f"mbstd_group {cfg.discriminator.mbstd_group} does not divide the per-process batch {b}: "
                      "minibatch-stddev groups differ from a one-process run", stacklevel=2)
    patches = PatchDataset(dataset, patch=cfg.generator.patch_size, seed=seed)
    loader = make_loader(patches, b, workers, ctx.rank, ctx.world_size, seed=seed, drop_last=True)
    spe = len(loader)
    if spe == 0:
        raise UserError(f"dataset too small: {len(dataset)} images give no full batch of {b} per process")
    batches = batches_from(loader, spe, prog.iteration)

    stats = Stats()
    steps = Steps(cfg, nets, ctx, amp, prog, stats)
    plan = BatchPlan.make(cfg, ctx, b, steps.use_diversity)
    geometry = nets.G.geometry
    log = RunLog(run / "logs" if ctx.is_main else None)
    bar = None
    if ctx.is_main and progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=prog.iteration, unit="it", desc="train", dynamic_ncols=True, mininterval=1.0)
    last_ckpt = (runs.list_checkpoints(run) or [None])[-1]
    t_start = t_log = time.perf_counter()
    it_start = it_log = prog.iteration
    last_logged: dict[str, float | None] = {}
    ckpt_due = False

    def checkpoint(done: int) -> None:
        nonlocal last_ckpt
        if ctx.distributed:  # the replicas must agree bit for bit
            prints = dist_.all_gather_objects(ctx, fingerprint(nets.G, nets.D, nets.G_ema))
            if len(set(prints)) != 1:
                raise RuntimeError(f"replicas diverged at iteration {done}: parameters differ between ranks")
        tensors = checkpoint_tensors(nets, prog) if ctx.is_main else None
        dist_.barrier(ctx)
        if ctx.is_main:
            meta = {"iteration": str(done), "images_seen": str(done * plan.batch), "seed": str(seed),
                    "world_size": str(ctx.world_size),
                    "progress": {"nan_skips": prog.nan_skips, "nan_streak": prog.nan_streak,
                                 "skipped": prog.skipped, "epoch": done // spe, "steps_per_epoch": spe,
                                 "global_batch": plan.batch, "last": last_logged}}
            last_ckpt = S.save_checkpoint(run, done, tensors, cfg, meta)
        dist_.barrier(ctx)

    try:
        for t in range(prog.iteration, total):
            real, real_label = next(batches)
            real, real_label = real.to(ctx.device, non_blocking=True), real_label.to(ctx.device, non_blocking=True)
            ok = steps.d_step(real, real_label, plan.d_inputs(cfg, geometry, seed, t))
            if tc.r1_every > 0 and t % tc.r1_every == 0:
                ok &= steps.r1_step(real)
            ok &= steps.g_step(plan.g_inputs(cfg, geometry, seed, t))
            if tc.pl_every > 0 and tc.pl_weight > 0 and t % tc.pl_every == 0:
                ok &= steps.pl_step(*plan.pl_inputs(cfg, geometry, seed, t))
            ema_update(nets.G_ema, nets.G, tc.ema_decay)

            done = prog.iteration = t + 1
            prog.nan_streak = 0 if ok else prog.nan_streak + 1
            if not ok and ctx.is_main:
                msg = f"iteration {done}: non-finite loss or gradient, optimizer step skipped ({prog.nan_streak} in a row)"
                bar.write(msg) if bar is not None else log_.warning(msg)
            if prog.nan_streak >= max_nonfinite:
                raise UserError(f"training diverged: {prog.nan_streak} consecutive non-finite steps at iteration "
                                f"{done}; last good checkpoint: {last_ckpt if last_ckpt else 'none'}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stats.running(POSTFIX), refresh=False)
            if done % tc.log_every == 0 or done == total:
                now = time.perf_counter()
                spi = (now - t_log) / max(done - it_log, 1)
                t_log, it_log = now, done
                values = stats.reduce(ctx)
                values.update({"speed/sec_per_iteration": spi, "speed/images_per_second": plan.batch / spi,
                               "nan/skips_total": prog.nan_skips, "nan/streak": prog.nan_streak})
                last_logged = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
                log.scalars(values, done)
            # periodic checkpoints wait while steps are being skipped, so that the newest
            # checkpoints (and the one the divergence message names) predate the trouble
            ckpt_due = ckpt_due or done % tc.checkpoint_every == 0
            if (ckpt_due and prog.nan_streak == 0) or done == total:
                checkpoint(done)
                ckpt_due = False
            if samples and ctx.is_main and (done % tc.sample_every == 0 or done == total):
                save_image(run / "samples" / f"iter-{done:08d}.png", render_sample_grid(nets.G_ema, cfg, ctx.device))
    finally:
        if bar is not None:
            bar.close()
        log.close()
        batches.close()
        del batches, loader
    n_done = prog.iteration - it_start
    return {"iteration": prog.iteration, "images_seen": prog.iteration * plan.batch,
            "checkpoint": str(last_ckpt) if last_ckpt else None, "nan_skips": prog.nan_skips,
            "seconds_per_iteration": (time.perf_counter() - t_start) / n_done if n_done else None,
            "fingerprint": fingerprint(nets.G, nets.D, nets.G_ema), "rank": ctx.rank, "world_size": ctx.world_size}
