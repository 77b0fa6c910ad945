"""The phases of an iteration and the one loss object that runs them (paper Section 3.5, Eq. 6).

| phase | trains | optimizer | every           | loss                                                       |
|-------|--------|-----------|-----------------|------------------------------------------------------------|
| d     | D      | D's Adam  | 1               | logistic(real, fake) + aux_weight * L1(vertical position)   |
| r1    | D      | D's Adam  | ``r1_every``    | r1_gamma / 2 * r1_every * R1 on the real batch              |
| g     | G      | G's Adam  | 1               | non-saturating + aux on fake + diversity_weight * Eq. 2 (*) |
| pl    | G      | G's Adam  | ``pl_every``    | pl_weight * pl_every * path length w.r.t. GT's W+ styles     |

(*) + colour_consistency_weight * the pairs' mean-colour difference (not in the paper; 0 = off).

The auxiliary label of a real patch is its crop's row offset, of a fake patch its sampled window
start; fake patches get the auxiliary loss only with scenery coordinates (object coordinates and
the periodic vertical axis of texture coordinates have no "up"), and the baselines without GS
(``gs_layers == 0``) get neither it nor the diversity loss. Diversity pairs: sample j of the first
half of a process's batch with sample j + b / 2 (same zg, style mixing and coordinates, different
zl). Path length: on batch // pl_batch_shrink samples, running mean decay ``pl_decay``.

Data parallelism: the R1 and path-length penalties use ``autograd.grad(create_graph=True)``
through the DDP-wrapped forward, and zero-weighted terms (``0 * output.sum()``) put every parameter
in the graph, so DDP averages every gradient; the path-length mean is all-reduced.

The two terms where this implementation departs on purpose from the authors' code (the
diversity loss and the path-length normalisation, docs/training.md) are the fields of
``LossTerms``; ``tests/test_official_training_parity.py`` swaps in the authors' forms to compare
the rest of the iteration with theirs term by term.

Non-finite guard: a phase whose loss or gradients (after all-reduce) are not finite skips its
optimizer step (counted in ``Progress``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..config import ModelConfig
from ..discriminator import mbstd_group_size
from ..parallel import env as dist_
from . import losses as L
from .inputs import BatchPlan, FakeInputs
from .nets import Nets, quiet_grad_stride_hint, requires_grad
from .state import Progress


@dataclass(frozen=True)
class Phase:
    """A row of the phase table: ``name`` trains ``net`` ("G" or "D") every ``every`` iterations."""

    name: str
    net: str
    every: int

    def due(self, t: int) -> bool:
        return self.every > 0 and t % self.every == 0


def phase_table(cfg: ModelConfig) -> tuple[Phase, ...]:
    tc = cfg.training
    return (Phase("d", "D", 1), Phase("r1", "D", tc.r1_every), Phase("g", "G", 1),
            Phase("pl", "G", tc.pl_every if tc.pl_weight > 0 else 0))


@dataclass(frozen=True)
class LossTerms:
    """The exchangeable terms of the losses: ``diversity(zl1, zl2, zs1, zs2) -> scalar`` (paper
    Eq. 2; None: ``losses.diversity_loss``) and ``path_lengths(grad (B, n_styles, D)) -> (B,)``
    (None: StyleGAN2's ``losses.style_path_lengths``)."""

    diversity: Callable | None = None
    path_lengths: Callable | None = None


def uses_diversity(cfg: ModelConfig) -> bool:
    """The diversity loss needs GS (absent from the baselines) and a non-zero weight."""
    return cfg.generator.gs_layers > 0 and cfg.training.diversity_weight != 0


def uses_pairs(cfg: ModelConfig) -> bool:
    """Whether G's batch holds pairs (same zg and style mixing, other zl): for the diversity loss
    (same coordinates too, paper Eq. 2) or the colour-consistency loss."""
    return uses_diversity(cfg) or cfg.training.colour_consistency_weight != 0


def colour_pairs_only(cfg: ModelConfig) -> bool:
    """Pairs made only for the colour-consistency loss: they differ in horizontal phase too (two
    places of one canvas; the colour along a canvas follows the periodic horizontal coordinate,
    docs/training.md) and reach D outside each other's minibatch-stddev group."""
    return uses_pairs(cfg) and not uses_diversity(cfg)


def mbstd_groups(batch: int, group: int) -> list[int]:
    """The minibatch-stddev group of every position of a batch (``discriminator.minibatch_stddev``)."""
    n_groups = batch // mbstd_group_size(batch, group)
    return [p % n_groups for p in range(batch)]


def pair_separating_order(batch: int, pairs: int, group: int) -> torch.Tensor:
    """An order of a paired batch (sample j with j + pairs) in which no minibatch-stddev group holds
    both members of a pair: the second members rotated by the smallest shift that does it (the
    identity when none does, e.g. a single group). -> long (batch,): batch[order] is fed to D."""
    groups = mbstd_groups(batch, group)
    for shift in range(pairs):
        second = [pairs + (j + shift) % pairs for j in range(pairs)]
        order = list(range(pairs)) + second + list(range(2 * pairs, batch))
        where = {sample: pos for pos, sample in enumerate(order)}
        if all(groups[where[j]] != groups[where[j + pairs]] for j in range(pairs)):
            return torch.tensor(order)
    return torch.arange(batch)


class Stats:
    """Running means of scalar statistics between two log points (reduced over processes).

    Values stay on the device until :meth:`reduce` (no host sync per iteration).
    """

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            v = v.detach().reshape(()) if torch.is_tensor(v) else float(v)
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


def all_finite(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> bool:
    """True iff the loss and every gradient are finite (one host sync)."""
    parts = [loss.detach().float().reshape(1)]
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        parts.append(torch.stack(torch._foreach_norm(grads)).float())
    return bool(torch.isfinite(torch.cat(parts)).all().item())


class TrainingLoss:
    """Runs a phase of iteration t: its loss, backward, the finite guard and the optimizer step."""

    def __init__(self, cfg: ModelConfig, nets: Nets, plan: BatchPlan, ctx: dist_.DistContext, amp: str | None,
                 progress: Progress, stats: Stats):
        self.cfg, self.nets, self.plan, self.ctx, self.amp = cfg, nets, plan, ctx, amp
        self.progress, self.stats = progress, stats
        g = cfg.generator
        self.fake_aux = g.gs_layers > 0 and g.coords.system == "scenery"
        self.use_diversity = uses_diversity(cfg)
        self.colour_only = colour_pairs_only(cfg)
        self.aux_tol = 1.0 / max(g.coords.train_vertical_positions - 1, 1)  # half the fake labels' spacing
        self.phases = phase_table(cfg)
        self.terms = LossTerms()

    def run(self, phase: Phase, t: int, real: torch.Tensor, real_label: torch.Tensor) -> bool:
        """One phase; False when its step was skipped (non-finite loss or gradients)."""
        n = self.nets
        requires_grad(n.G, phase.net == "G")
        requires_grad(n.D, phase.net == "D")
        loss, stats, on_success = getattr(self, f"_{phase.name}")(t, real, real_label)
        with quiet_grad_stride_hint():
            loss.backward()
        params, optim = (n.g_params, n.g_optim) if phase.net == "G" else (n.d_params, n.d_optim)
        ok = dist_.all_true(self.ctx, all_finite(loss, params))
        if ok:
            optim.step()
            if on_success is not None:
                on_success()
        else:
            self.progress.nan_skips += 1
            self.progress.skipped[phase.name] += 1
        optim.zero_grad(set_to_none=True)
        self.stats.add(stats)
        return ok

    # ------------------------------------------------------------------------ the four losses
    def _autocast(self):
        if self.amp == "bf16":
            return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _generate(self, step, x: FakeInputs):
        return step(x.zg, x.zl, x.coords, x.noises, x.zg_mix, x.mix_index)

    def _aux_stats(self, prefix: str, aux: torch.Tensor, label: torch.Tensor) -> dict:
        err = (aux[:, 0].detach().float() - label.float()).abs()
        return {f"aux/{prefix}_error": err.mean(), f"aux/{prefix}_accuracy": (err < self.aux_tol).float().mean()}

    def _d(self, t, real, real_label):
        n, tc = self.nets, self.cfg.training
        fake_in = self.plan.d_inputs(t)
        with torch.no_grad(), self._autocast():
            fake = self._generate(n.g_step_raw, fake_in)[0]
        with self._autocast():
            real_logit, real_aux = n.d_fwd(real)
            fake_logit, fake_aux = n.d_fwd(fake.detach())
        adv = L.d_logistic_loss(real_logit, fake_logit)
        aux_real = L.aux_vertical_loss(real_aux, real_label)
        loss = adv + tc.aux_weight * aux_real
        st = {"loss/d_adv": adv, "loss/d_aux_real": aux_real,
              "d/real_logit": real_logit.detach().float().mean(), "d/fake_logit": fake_logit.detach().float().mean()}
        st.update(self._aux_stats("real", real_aux, real_label))
        if self.fake_aux:
            aux_fake = L.aux_vertical_loss(fake_aux, fake_in.label)
            loss = loss + tc.aux_weight * aux_fake
            st["loss/d_aux_fake"] = aux_fake
            st.update(self._aux_stats("fake", fake_aux, fake_in.label))
        # every D parameter in the graph (DDP without find_unused_parameters)
        loss = loss + 0.0 * (real_aux.float().sum() + fake_aux.float().sum())
        st["loss/d_total"] = loss
        return loss, st, None

    def _r1(self, t, real, real_label):
        n, tc = self.nets, self.cfg.training
        real = real.detach().requires_grad_(True)
        with self._autocast():
            logit, aux = n.d_fwd(real)
        r1 = L.r1_penalty(logit, real)
        loss = tc.r1_gamma / 2.0 * tc.r1_every * r1 + 0.0 * (logit.float().sum() + aux.float().sum())
        return loss, {"reg/r1": r1}, None

    def _g(self, t, real, real_label):
        n, tc = self.nets, self.cfg.training
        fake_in = self.plan.g_inputs(t)
        k = fake_in.pairs
        label = fake_in.label
        with self._autocast():
            rgb, zs, _ = self._generate(n.g_step, fake_in)
            if k > 0 and self.colour_only:
                # pairs made only for the colour loss: D sees them outside each other's
                # minibatch-stddev group, as it sees the unpaired fakes of its own phase
                order = pair_separating_order(rgb.shape[0], k, self.cfg.discriminator.mbstd_group)
                logit, aux = n.D(rgb[order])
                label = label[order]
            else:
                logit, aux = n.D(rgb)  # the raw D: its gradients are not needed here
        adv = L.g_nonsaturating_loss(logit)
        loss = adv
        st = {"loss/g_adv": adv}
        if self.fake_aux:
            aux_l = L.aux_vertical_loss(aux, label)
            loss = loss + tc.aux_weight * aux_l
            st["loss/g_aux"] = aux_l
        if self.use_diversity and k > 0:
            div = (self.terms.diversity or L.diversity_loss)(fake_in.zl[:k], fake_in.zl[k:2 * k], zs[:k], zs[k:2 * k])
            loss = loss + tc.diversity_weight * div
            st["loss/diversity"] = div
        if tc.colour_consistency_weight != 0 and k > 0:
            col = L.colour_consistency_loss(rgb[:k], rgb[k:2 * k])
            loss = loss + tc.colour_consistency_weight * col
            st["loss/colour_consistency"] = col
        loss = loss + 0.0 * (rgb.float().sum() + zs.float().sum())
        st["loss/g_total"] = loss
        return loss, st, None

    def _pl(self, t, real, real_label):
        n, tc, prog = self.nets, self.cfg.training, self.progress
        fake_in, direction = self.plan.pl_inputs(t)
        with self._autocast():
            rgb, zs, styles = self._generate(n.g_step, fake_in)
        pen, new_mean, lengths = L.path_length_penalty(
            rgb, styles, prog.pl_mean, tc.pl_decay, noise=direction,
            reduce_mean=lambda m: dist_.all_reduce_mean(self.ctx, m),
            lengths_of=self.terms.path_lengths or L.style_path_lengths)
        loss = tc.pl_weight * tc.pl_every * pen + 0.0 * (rgb.float().sum() + zs.float().sum())
        mean = float(new_mean.item())

        def accept():
            prog.pl_mean = mean

        st = {"reg/path_length": lengths.mean(), "reg/pl_penalty": pen, "reg/pl_mean": mean}
        return loss, st, accept
