"""Frechet Inception distance (Heusel et al. 2017) and kernel Inception distance (Binkowski et
al. 2018) on feature sets, in float64.

FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The trace of the matrix square
root is computed without a general ``sqrtm``: with S1 = V diag(w) V^T (symmetric eigen-
decomposition) and R = S1^(1/2) = V diag(sqrt(w)) V^T, S1 S2 is similar to the symmetric PSD
matrix R S2 R, so tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(R S2 R)) (negative rounding noise
clipped to 0). Stable for the singular covariances of small sets (N < 2048).

KID = the unbiased estimate of MMD^2 with the cubic polynomial kernel
k(x, y) = (x . y / d + 1)^3, averaged over ``n_subsets`` random subsets of ``subset_size``
features from each set (torch-fidelity's defaults: 100 subsets of 1000), with its standard
deviation over the subsets.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gaussian_stats", "frechet_distance", "kid"]


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    r = _sqrt_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(feats1: np.ndarray, feats2: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size used); the subset size is capped by both sets'
    sizes. With one subset as large as both sets, it is the plain unbiased MMD^2."""
    x = np.asarray(feats1, np.float64)
    y = np.asarray(feats2, np.float64)
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    rng = np.random.default_rng([int(seed) & ((1 << 63) - 1), 0x41D])
    vals = []
    for _ in range(int(n_subsets)):
        xi = x if m == x.shape[0] else x[rng.choice(x.shape[0], m, replace=False)]
        yi = y if m == y.shape[0] else y[rng.choice(y.shape[0], m, replace=False)]
        vals.append(_mmd2_unbiased(xi, yi))
        if m == x.shape[0] and m == y.shape[0]:
            break  # every subset would be the same
    v = np.asarray(vals)
    return float(v.mean()), float(v.std()), m
