"""Tests for the built-in procedural landscape source."""

import numpy as np
import torch

from infinitygan.data.procedural import ProceduralLandscapes, render_landscape


def test_shape_dtype_and_determinism():
    a = render_landscape(7, 197, 197)
    b = render_landscape(7, 197, 197)
    assert a.shape == (197, 197, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_different_seeds_differ():
    imgs = [render_landscape(s, 64, 64).astype(np.float32) for s in range(6)]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 3.0


def test_not_flat_and_uses_range():
    img = render_landscape(3, 197, 197)
    assert img.std() > 10
    assert img.max() > img.min() + 60


def test_sky_on_top_in_most_seeds():
    hits = 0
    n = 16
    for s in range(n):
        img = render_landscape(s, 96, 96).astype(np.float32)
        top, bottom = img[:15], img[-15:]
        blue_top = (top[..., 2] - top[..., 0]).mean()
        blue_bottom = (bottom[..., 2] - bottom[..., 0]).mean()
        if blue_top > blue_bottom + 5 or abs(top.mean() - bottom.mean()) > 15:
            hits += 1
    assert hits >= 0.8 * n


def test_wide_render_continues_scene():
    wide = render_landscape(11, 197, 2048)
    assert wide.shape == (197, 2048, 3)
    square = render_landscape(11, 197, 197)
    # Same world coordinates: the left part of the panorama is the square image
    # (only the reflection blur near the right border may differ).
    diff = np.abs(wide[:, :180].astype(np.int16) - square[:, :180].astype(np.int16))
    assert diff.mean() < 1.0
    # the panorama keeps changing horizontally (not a stretched / repeated tile)
    quarters = [wide[:, k * 512:(k + 1) * 512].astype(np.float32) for k in range(4)]
    assert np.abs(quarters[0] - quarters[2]).mean() > 3.0
    col_means = wide.astype(np.float32).mean(axis=(0, 2))
    assert col_means[:1024].std() > 0.5 and col_means[1024:].std() > 0.5


def test_odd_and_tiny_sizes():
    for h, w in [(1, 1), (5, 9), (33, 17)]:
        assert render_landscape(1, h, w).shape == (h, w, 3)


def test_render_work_is_bounded_by_size(monkeypatch):
    """Every noise value goes through the lattice hash: count hashed values instead of timing.
    A few per pixel, and a twice-as-wide image costs at most twice the work (no hidden
    per-image or quadratic cost)."""
    from infinitygan.data import procedural

    count = {"n": 0}
    orig = procedural._hash2

    def counted(ix, iy, seed, *dtype):
        out = orig(ix, iy, seed, *dtype)
        count["n"] += out.size
        return out

    monkeypatch.setattr(procedural, "_hash2", counted)
    for seed in range(4):
        work = []
        for w in (197, 394):
            count["n"] = 0
            render_landscape(seed, 197, w)
            work.append(count["n"])
        assert 0 < work[0] <= 8 * 197 * 197, (seed, work)
        assert work[1] <= 2.05 * work[0], (seed, work)


def test_pixels_are_float32_noise_coordinates_float64():
    """The pixel arrays are float32 (half the memory traffic), the lattice positions computed in
    float64 from float64 coordinates: far from the origin (x0 up to 1000, times an octave's
    frequency) the float32 noise equals a float64 evaluation of the same lattice to float32
    precision."""
    from infinitygan.data import procedural

    xs, ys = np.arange(197) / 197 * 180.0 + 999.0 * 180.0, np.arange(50) / 50 * 9.0
    n = procedural._vnoise2(xs, ys, 3)
    assert n.dtype == np.float32 and n.shape == (50, 197)
    # float64 reference: per-pixel value noise from the same hash (24-bit lattice values)
    ix, iy = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    sx, sy = xs - np.floor(xs), ys - np.floor(ys)
    sx, sy = sx * sx * (3 - 2 * sx), sy * sy * (3 - 2 * sy)
    h = lambda a, b: procedural._hash2(a, b, 3, np.float32).astype(np.float64)  # noqa: E731
    X, Y = ix[None, :], iy[:, None]
    top = h(X, Y) + (h(X + 1, Y) - h(X, Y)) * sx[None, :]
    bot = h(X, Y + 1) + (h(X + 1, Y + 1) - h(X, Y + 1)) * sx[None, :]
    ref = top + (bot - top) * sy[:, None]
    assert np.abs(n - ref).max() < 1e-5


def test_hash_float32_is_in_unit_interval():
    from infinitygan.data import procedural

    h = procedural._hash2(np.arange(-5000, 5000)[None, :], np.arange(50)[:, None], 11, np.float32)
    assert h.dtype == np.float32 and h.min() >= 0.0 and h.max() < 1.0
    assert abs(float(h.mean()) - 0.5) < 0.01


def test_dataset():
    ds = ProceduralLandscapes(size=64, length=10, seed=3)
    assert len(ds) == 10
    x = ds[4]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert torch.equal(x, ProceduralLandscapes(size=64, length=10, seed=3)[4])
    assert not torch.equal(x, ds[5])
    assert not torch.equal(x, ProceduralLandscapes(size=64, length=10, seed=4)[4])
    assert torch.equal(ds[-1], ds[9])
    try:
        ds[10]
    except IndexError:
        pass
    else:
        raise AssertionError("expected IndexError")


def test_dataset_honours_pre_resize_like_a_folder():
    """pre_resize: the render at ``size`` goes through Lanczos to pre_resize, then Lanczos to
    ``size`` (data.preprocess_uint8, the folders' chain); load_uint8(i, pre_resize) stops there."""
    from PIL import Image

    plain = ProceduralLandscapes(size=64, length=10, seed=3)
    pre = ProceduralLandscapes(size=64, length=10, seed=3, pre_resize=32)
    photo = Image.fromarray(render_landscape(pre.image_seed(4), 64, 64))
    small = photo.resize((32, 32), Image.Resampling.LANCZOS)
    back = np.asarray(small.resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(pre.load_uint8(4), back)
    assert torch.equal(pre[4], torch.from_numpy(back.transpose(2, 0, 1).copy()).float().div(127.5).sub(1.0))
    assert np.array_equal(pre.load_uint8(4, 32), np.asarray(small))
    assert np.array_equal(plain.load_uint8(4), np.asarray(photo))  # no pre_resize: the render itself
    assert not torch.equal(pre[4], plain[4])
    # less detail: the pre-resized image is smoother (mean absolute horizontal gradient)
    grad = lambda a: np.abs(np.diff(a.astype(np.float64), axis=1)).mean()  # noqa: E731
    assert grad(pre.load_uint8(4)) < grad(plain.load_uint8(4))
