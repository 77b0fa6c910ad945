"""Tests of the sliced Wasserstein distance metric (infinitygan.metrics.swd)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infinitygan.metrics.swd import (
    DESCRIPTOR_DIM,
    SWDAccumulator,
    laplacian_pyramid,
    pyramid_sizes,
    swd,
    to_float_images,
)

# Small settings so that the whole file runs in a few seconds.
FAST = dict(patches_per_image=128, n_projections=128, n_repeats=2)
N, S = 128, 48  # images per set, image side (levels: 48, 24)


def smooth_images(n: int, size: int = S, seed: int = 0, gray: bool = False) -> torch.Tensor:
    """Smooth random images (n, 3, size, size) in [-1, 1]: white noise under one fixed blur."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1 if gray else 3, size + 8, size + 8, generator=g)
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256.0
    for _ in range(2):  # two valid 5x5 binomial blurs: 8 px margin consumed
        x = F.conv2d(x, k.expand(x.shape[1], 1, 5, 5), groups=x.shape[1])
    x = torch.tanh(2.0 * x / x.std())
    return x.expand(n, 3, size, size).contiguous() if gray else x


def white_noise(n: int, size: int = S, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def sets():
    return {
        "a": smooth_images(N, seed=1),
        "b": smooth_images(N, seed=2),  # same distribution, independent draw
        "white": white_noise(N, seed=3),
        "gray": smooth_images(N, seed=4, gray=True),  # same blur, no colour
    }


def test_result_format(sets):
    r = swd(sets["a"], sets["b"], **FAST)
    assert set(r) == {"levels", "resolutions", "mean"}
    assert r["resolutions"] == [48, 24]
    assert len(r["levels"]) == 2
    assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in r["levels"])
    assert r["mean"] == pytest.approx(sum(r["levels"]) / 2)


def test_identical_sets_give_zero(sets):
    same = swd(sets["a"], sets["a"], **FAST)
    diff = swd(sets["a"], sets["white"], **FAST)
    assert same["mean"] < 1e-3
    assert max(same["levels"]) < 1e-3
    assert diff["mean"] > 1.0


def test_same_distribution_small_vs_different(sets):
    same = swd(sets["a"], sets["b"], **FAST)
    white = swd(sets["a"], sets["white"], **FAST)
    gray = swd(sets["a"], sets["gray"], **FAST)
    assert same["mean"] > 0
    assert same["mean"] < 0.5 * white["mean"], (same, white)
    assert same["mean"] < 0.3 * gray["mean"], (same, gray)
    # The finest level sees the texture difference most clearly.
    assert same["levels"][0] < 0.35 * white["levels"][0]


def test_symmetric(sets):
    ab = swd(sets["a"], sets["b"], **FAST)
    ba = swd(sets["b"], sets["a"], **FAST)
    assert ab["levels"] == pytest.approx(ba["levels"], rel=1e-4)
    # Unequal sizes: the larger set is subsampled; still (nearly) symmetric.
    ab = swd(sets["a"][:80], sets["white"], **FAST)
    ba = swd(sets["white"], sets["a"][:80], **FAST)
    assert ab["mean"] == pytest.approx(ba["mean"], rel=0.05)


def test_deterministic_given_seed(sets):
    r1 = swd(sets["a"], sets["b"], seed=7, **FAST)
    r2 = swd(sets["a"], sets["b"], seed=7, **FAST)
    r3 = swd(sets["a"], sets["b"], seed=8, **FAST)
    assert r1 == r2
    assert r1["levels"] != r3["levels"]
    assert r1["mean"] == pytest.approx(r3["mean"], rel=0.5)  # same quantity, other sample


def test_size_mismatch_raises(sets):
    with pytest.raises(ValueError, match="same size"):
        swd(sets["a"], white_noise(4, size=40), **FAST)
    acc = SWDAccumulator(**FAST)
    acc.add_real(sets["a"][:4])
    with pytest.raises(ValueError, match="same size"):
        acc.add_real(white_noise(2, size=40))
    with pytest.raises(ValueError, match="same size"):
        acc.add_fake(white_noise(2, size=40))
    with pytest.raises(ValueError, match="smaller than min_res"):
        swd(white_noise(2, size=12), white_noise(2, size=12), **FAST)
    with pytest.raises(ValueError, match="no fake images"):
        acc.compute()


def test_streaming_equals_one_shot(sets):
    one_shot = swd(sets["a"], sets["white"], **FAST)
    acc = SWDAccumulator(**FAST)
    real_splits = [5, 59, 64]
    fake_splits = [64, 1, 63]
    i = j = 0
    for nr, nf in zip(real_splits, fake_splits):  # interleaved, uneven batches
        acc.add_real(sets["a"][i:i + nr])
        acc.add_fake(sets["white"][j:j + nf])
        i, j = i + nr, j + nf
    assert (acc.num_real, acc.num_fake) == (N, N)
    streamed = acc.compute()
    assert streamed["resolutions"] == one_shot["resolutions"]
    assert streamed["levels"] == pytest.approx(one_shot["levels"], rel=1e-5)
    # Iterables (here a generator) of batches are accepted by swd() too.
    gen = (sets["white"][k:k + 7] for k in range(0, N, 7))
    from_iter = swd(list(sets["a"].split(9)), gen, **FAST)
    assert from_iter["levels"] == pytest.approx(one_shot["levels"], rel=1e-5)


def test_pyramid_levels_197_128_and_101():
    """The evaluation's sizes: 197 (full), 128 (the reference size of the N x columns), 101 (patch)."""
    assert pyramid_sizes(197, 197) == [(197, 197), (99, 99), (50, 50), (25, 25)]
    assert pyramid_sizes(128, 128) == [(128, 128), (64, 64), (32, 32), (16, 16)]
    assert pyramid_sizes(101, 101) == [(101, 101), (51, 51), (26, 26)]
    for size, expect in ((197, [197, 99, 50, 25]), (128, [128, 64, 32, 16]), (101, [101, 51, 26])):
        x = white_noise(2, size=size)
        levels = laplacian_pyramid(x)
        assert [lv.shape[-1] for lv in levels] == expect
        r = swd(x, x.flip(0), patches_per_image=4, n_projections=8, n_repeats=1)
        assert r["resolutions"] == expect
        assert len(r["levels"]) == len(expect)


def test_laplacian_pyramid_of_constant():
    x = torch.full((2, 3, 101, 101), 0.25)
    levels = laplacian_pyramid(x)
    for band in levels[:-1]:
        assert band.abs().max() < 1e-6
    assert torch.allclose(levels[-1], torch.full_like(levels[-1], 0.25))


def test_uint8_conversion(sets):
    imgs = np.random.default_rng(0).integers(0, 256, size=(6, S, S, 3), dtype=np.uint8)
    t = to_float_images(imgs)
    assert t.shape == (6, 3, S, S) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert torch.allclose(t[1, 2], torch.from_numpy(imgs[1, :, :, 2]).float() / 127.5 - 1,
                          atol=1e-6)
    assert torch.equal(to_float_images(torch.from_numpy(imgs)), t)
    assert swd(imgs, imgs[::-1].copy(), **FAST) == swd(t, t.flip(0), **FAST)
    with pytest.raises(ValueError):
        to_float_images(np.zeros((2, S, S), dtype=np.uint8))


def test_descriptor_dim():
    assert DESCRIPTOR_DIM == 147


def test_sliced_w1_matches_naive_definition():
    """Sorted-projection W1, checked against a float64 transcription of the definition."""
    from concurrent.futures import ThreadPoolExecutor

    from infinitygan.metrics.swd import _sliced_w1

    g = torch.Generator().manual_seed(0)
    a = torch.randn(700, DESCRIPTOR_DIM, generator=g)
    b = torch.randn(500, DESCRIPTOR_DIM, generator=g) * 1.3 + 0.2
    ref_gen = torch.Generator().manual_seed(5)
    total = []
    for _ in range(3):
        dirs = torch.randn(40, DESCRIPTOR_DIM, generator=ref_gen)
        dirs = (dirs / dirs.norm(dim=1, keepdim=True)).double()
        keep = torch.randperm(700, generator=ref_gen)[:500].sort().values
        pa = torch.sort(a[keep].double() @ dirs.T, dim=0).values  # (500, 40)
        pb = torch.sort(b.double() @ dirs.T, dim=0).values
        total.append((pa - pb).abs().mean(dim=0))
    expected = torch.cat(total).mean().item()
    with ThreadPoolExecutor(2) as pool:
        got = _sliced_w1(a, b, 40, 3, torch.Generator().manual_seed(5), pool, 2)
    assert got == pytest.approx(expected, rel=1e-5)
    assert _sliced_w1(a, b, 40, 3, torch.Generator().manual_seed(5)) == pytest.approx(got, rel=1e-6)
