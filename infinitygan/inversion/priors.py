"""Priors of the inversion objective (paper Appendix K).

* Gaussianized W (Wulff & Torralba 2020): the mapping network ends in a leaky ReLU of slope 0.2
  (times sqrt 2); a leaky ReLU of slope 5 undoes it, v = leaky_relu(w, 5), and the distribution
  of v is close to a Gaussian. Its mean and covariance are estimated from ``samples`` mapped
  zg ~ N(0, I) (10,000 by default); the prior is the Mahalanobis distance of every W+ slot.
  The inversion optimises v directly (w = leaky_relu(v, 0.2) is the exact inverse map).
* zg and zl: N(0, I) priors, for which the Mahalanobis distance is a squared L2 norm.
* StyleGAN2's noise regularisation (spatial autocorrelation of every noise map at every scale of
  a 2x average-pool pyramid, StyleGAN2's plain mean) and renormalisation (zero mean, unit
  variance after every step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..generator import Generator

#: slope that undoes the mapping network's final leaky ReLU (slope 0.2): 0.2 * 5 = 1
GAUSSIANIZE_SLOPE = 5.0


def gaussianize(w: torch.Tensor) -> torch.Tensor:
    """v = leaky_relu(w, 5): the mapping's last activation undone (any shape)."""
    return F.leaky_relu(w, GAUSSIANIZE_SLOPE)


def degaussianize(v: torch.Tensor) -> torch.Tensor:
    """w = leaky_relu(v, 0.2), the exact inverse of ``gaussianize``."""
    return F.leaky_relu(v, 1.0 / GAUSSIANIZE_SLOPE)


@dataclass
class GaussianizedW:
    """Empirical Gaussian of v = gaussianize(mapping(zg)). mean (D,), cov (D, D), w_std: scalar
    spread of w (sqrt of the mean per-dimension variance), used for the StyleGAN2 latent noise."""

    mean: torch.Tensor
    cov: torch.Tensor
    w_std: float

    @classmethod
    def estimate(cls, generator: Generator, samples: int = 10_000, seed: int = 0,
                 chunk: int = 2_000) -> "GaussianizedW":
        """Statistics from ``samples`` zg ~ N(0, I) drawn from ``seed`` (deterministic)."""
        p = next(generator.parameters())
        g = torch.Generator().manual_seed(int(seed))
        vs, ws = [], []
        with torch.no_grad():
            for a in range(0, samples, chunk):
                z = torch.randn(min(chunk, samples - a), generator.cfg.zg_dim, generator=g)
                w = generator.mapping(z.to(device=p.device, dtype=p.dtype)).double().cpu()
                ws.append(w)
                vs.append(gaussianize(w))
        v = torch.cat(vs)
        w = torch.cat(ws)
        mean = v.mean(0)
        cov = torch.cov(v.T)
        w_std = float(((w - w.mean(0)) ** 2).sum(1).mean().sqrt() / w.shape[1] ** 0.5)
        return cls(mean, cov, w_std)

    def precision_factor(self, eps: float = 1e-6) -> torch.Tensor:
        """L (D, D) with L L^T = (cov + eps I)^-1 (float64), so d_M(v)^2 = |(v - mean) L|^2."""
        d = self.cov.shape[0]
        cov = self.cov + eps * float(self.cov.diagonal().mean()) * torch.eye(d, dtype=self.cov.dtype)
        prec = torch.linalg.inv(cov)
        prec = 0.5 * (prec + prec.T)
        return torch.linalg.cholesky(prec)


class WPrior:
    """Mahalanobis distance of W+ in the Gaussianized space, averaged over slots, per dimension.

    __call__(v): v (n_styles, D) Gaussianized styles -> scalar mean over slots of
    (v - mean)^T cov^-1 (v - mean) / D (about 1 for a typical sample of the prior).
    """

    def __init__(self, stats: GaussianizedW, device, dtype=torch.float32):
        self.mean = stats.mean.to(device=device, dtype=dtype)
        self.factor = stats.precision_factor().to(device=device, dtype=dtype)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        d = (v - self.mean) @ self.factor
        return (d * d).sum(-1).mean() / v.shape[-1]


def noise_regularization(noises: list[torch.Tensor], min_size: int = 8) -> torch.Tensor:
    """StyleGAN2's noise regulariser, as its projector computes it: squared autocorrelation at
    lag 1 (both axes) of every map (h, w) or (1, h, w), then of its 2x average-pooled versions
    (a plain mean of each 2x2 block) down to ``min_size``.

    The plain mean is StyleGAN2's (the paper follows it, Appendix K): pooled white noise has a
    quarter of the variance, so each coarser level weighs 16x less than the one above it, and
    the weight 1000 acts mostly on the finest scale. Shifted products over the window (no
    wrap-around as in StyleGAN2's roll: the maps are windows of an infinite plane).
    """
    loss = noises[0].new_zeros(())
    for n in noises:
        x = n.reshape(1, 1, n.shape[-2], n.shape[-1])
        while True:
            if x.shape[-1] > 1:
                loss = loss + (x[..., :, 1:] * x[..., :, :-1]).mean() ** 2
            if x.shape[-2] > 1:
                loss = loss + (x[..., 1:, :] * x[..., :-1, :]).mean() ** 2
            if min(x.shape[-2:]) <= min_size:
                break
            x = F.avg_pool2d(x, 2)
    return loss


@torch.no_grad()
def renormalize_noises(noises: list[torch.Tensor]) -> None:
    """In place: every noise map to zero mean and unit standard deviation."""
    for n in noises:
        n.sub_(n.mean())
        n.div_(n.square().mean().sqrt().clamp_min(1e-8))
