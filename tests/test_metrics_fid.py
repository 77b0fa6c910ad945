"""FID and KID (metrics.fid) against direct formulas: scipy's sqrtm, a known distance, the MMD sum."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from infinitygan.metrics.fid import frechet_distance, gaussian_stats, kid

from test_metrics import _modest_cpu  # noqa: F401 (fixture)


# ------------------------------------------------------------------------------ FID / KID
def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d, rank in [(6, None), (12, None), (12, 5)]:  # full rank and singular (like N < 2048)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_cov(rng, d, rank), _random_cov(rng, d)
        ours = frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)
    # closed form for commuting (diagonal) covariances: sum (sqrt a - sqrt b)^2 + |mu1 - mu2|^2
    a, b = rng.uniform(0.1, 3, 9), rng.uniform(0.1, 3, 9)
    mu = rng.standard_normal(9)
    expect = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + (mu ** 2).sum())
    assert frechet_distance(mu, np.diag(a), np.zeros(9), np.diag(b)) == pytest.approx(expect, rel=1e-10)
    assert frechet_distance(mu, np.diag(a), mu, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_gaussian_stats_of_samples_give_the_known_distance():
    rng = np.random.default_rng(1)
    d = 4
    x = rng.standard_normal((20000, d))
    y = rng.standard_normal((20000, d)) * 2.0 + 1.0  # N(1, 4 I)
    # exact: |1|^2 * d + d (1 + 4 - 2 * 2) = d + d = 8
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(8.0, rel=0.05)


def _direct_mmd2(x, y):
    d = x.shape[1]

    def k(a, b):
        return (sum(float(ai) * float(bi) for ai, bi in zip(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_direct_formula():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.5
    # subsets as large as both sets: the plain unbiased estimate, once
    mean, std, size = kid(x, y, n_subsets=5, subset_size=1000)
    assert size == 6 and std == 0.0
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-10)
    # subsets: the mean over random subsets of the estimate on each subset
    mean, std, size = kid(x, y, n_subsets=2, subset_size=4, seed=3)
    sub = np.random.default_rng([3, 0x41D])
    vals = []
    for _ in range(2):
        xi = x[sub.choice(6, 4, replace=False)]
        yi = y[sub.choice(6, 4, replace=False)]
        vals.append(_direct_mmd2(xi, yi))
    assert size == 4 and mean == pytest.approx(np.mean(vals), rel=1e-10) and std == pytest.approx(np.std(vals))
    big = kid(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) + 3.0, n_subsets=3)[0]
    same = kid(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)), n_subsets=3)[0]
    assert big > 10 * abs(same)
