"""The evaluation protocol (metrics.protocol): resize modes, placements, the fake views as engine
regions, patch views and the real crops at the reference size. Fixtures: test_metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infinitygan.config import load_config
from infinitygan.metrics import protocol as P

from test_metrics import _modest_cpu  # noqa: F401 (fixture)


# ------------------------------------------------------------------------------ protocol
def test_resize_modes_sizes_and_their_difference():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for mode in P.RESIZE_MODES:
        assert P.resize(x, 8, mode).shape == (2, 3, 8, 8)
        assert P.resize(x, 64, mode) is x
    # paper: bilinear with align_corners=True keeps the corner pixels exactly
    y = P.resize(x, 8, "paper")
    assert torch.equal(y[..., 0, 0], x[..., 0, 0]) and torch.equal(y[..., -1, -1], x[..., -1, -1])
    # an 8x downsampling of a fine checkerboard: the antialiased resize averages it to grey,
    # the aliased paper resize keeps full-contrast pixels
    r = torch.arange(64)
    board = ((r[:, None] + r[None, :]) % 2).float().mul(2).sub(1).expand(1, 3, 64, 64)
    assert P.resize(board, 8, "clean").abs().max() < 0.1
    assert P.resize(board, 8, "paper").abs().max() > 0.9
    with pytest.raises(ValueError):
        P.resize(x, 8, "nearest")


def test_quantize_roundtrip():
    u = torch.randint(0, 256, (1, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(P.quantize(P.to_unit(u)), u)


def test_placements_sizes_and_vertical_distribution():
    cfg = load_config("tiny")
    F, cell = cfg.training.full_size, 2 ** cfg.generator.n_up
    V = cfg.generator.coords.train_vertical_positions
    for scale in (1, 2, 4, 8):
        views = P.placements(cfg, 400, scale, seed=5)
        assert len(views) == 400 and all(v.size == scale * F for v in views)
        centres = np.array([v.y + v.size / 2 - 2 for v in views])  # offset from the horizon row
        assert centres.min() >= -V / 2 * cell - 1 and centres.max() <= V / 2 * cell + 1
        assert centres.min() < -0.8 * V / 2 * cell and centres.max() > 0.8 * V / 2 * cell  # spread
        assert len({v.seed for v in views}) == 400 and len({v.x for v in views}) == 400
    one, eight = P.placements(cfg, 20, 1, 5), P.placements(cfg, 20, 8, 5)
    for a, b in zip(one, eight):  # the same centres and seeds at every scale
        assert a.seed == b.seed
        assert abs((a.y + a.size / 2) - (b.y + b.size / 2)) <= 1
        assert abs((a.x + a.size // 2) - (b.x + b.size // 2)) <= 1
    assert P.placements(cfg, 20, 1, 6) != one
    # periodic vertical coordinates: the whole period
    tex = cfg.generator.coords.__class__(system="texture", period=cfg.generator.coords.period)
    lo, hi = P.vertical_offset_range(tex, cfg.generator.n_up)
    assert (lo, hi) == (0.0, tex.period * cell)


def test_protocol_sizes_default_to_the_pre_resize():
    cfg = load_config("tiny")
    assert P.EvalProtocol.of(cfg) == P.EvalProtocol(full_size=197, reference_size=128, patch_size=101)
    assert P.EvalProtocol.of(cfg, reference_size=197).reference_size == 197
    cfg.training.pre_resize = None
    assert P.EvalProtocol.of(cfg).reference_size == 197
    proto = P.EvalProtocol(full_size=197, reference_size=128, patch_size=101)
    assert [proto.generated_size(c) for c in (P.PATCH, 1, 2, 8)] == [101, 197, 394, 1576]
    assert [proto.compared_size(c) for c in (P.PATCH, 1, 2, 8)] == [101, 128, 128, 128]


def test_fake_views_are_the_engine_regions_resized(tiny_model):
    cfg = tiny_model.config
    F, R = cfg.training.full_size, cfg.training.pre_resize
    assert (F, R) == (197, 128)
    views = P.placements(cfg, 2, 1, seed=0) + P.placements(cfg, 1, 2, seed=0)
    # default: downsampled to the reference size (the pre-resize), 1x included (197 -> 128)
    batches = list(P.fake_batches(tiny_model, views, "cpu", ("paper", "clean"), batch=2))
    assert [b["paper"].shape for b in batches] == [(2, 3, R, R), (1, 3, R, R)]
    assert all(b["paper"].dtype == torch.uint8 for b in batches)
    v = views[0]
    one = torch.from_numpy(tiny_model.generate(v.seed, F, F, x=v.x, y=v.y)).permute(2, 0, 1)[None]
    for mode in ("paper", "clean"):
        assert torch.equal(batches[0][mode][:1], P.quantize(P.resize(one, R, mode)))
    assert not torch.equal(batches[0]["paper"], batches[0]["clean"])
    # 2x: the (2F)^2 region downsampled to R, differently by the two modes
    v = views[2]
    big = torch.from_numpy(tiny_model.generate(v.seed, 2 * F, 2 * F, x=v.x, y=v.y)).permute(2, 0, 1)[None]
    assert torch.equal(batches[1]["paper"], P.quantize(P.resize(big, R, "paper")))
    assert torch.equal(batches[1]["clean"], P.quantize(P.resize(big, R, "clean")))
    assert not torch.equal(batches[1]["paper"], batches[1]["clean"])
    # compared at the full size: the 1x region itself (a composite of the engine's tiles), only quantized
    full = next(P.fake_batches(tiny_model, views[:1], "cpu", ("paper", "clean"), size=F))
    assert torch.equal(full["paper"], P.quantize(one)) and torch.equal(full["clean"], P.quantize(one))


def test_patch_views_and_real_crops(tiny_model):
    """The training-resolution column: P x P regions of the generator, not resized, centred like
    the 1x views; P x P crops of the preprocessed real full images, at seeded uniform positions."""
    from infinitygan.data.datasets import open_dataset

    cfg = tiny_model.config
    F, Pz = cfg.training.full_size, cfg.generator.patch_size
    views = P.placements(cfg, 2, 1, seed=4, size=Pz)
    ones = P.placements(cfg, 2, 1, seed=4)
    for p, o in zip(views, ones):
        assert p.size == Pz and p.seed == o.seed
        assert abs((p.y + Pz / 2) - (o.y + F / 2)) <= 1 and abs((p.x + Pz // 2) - (o.x + F // 2)) <= 1
    b = next(P.fake_batches(tiny_model, views, "cpu", ("paper", "clean"), size=Pz))
    v = views[1]
    expect = P.quantize(torch.from_numpy(tiny_model.generate(v.seed, Pz, Pz, x=v.x, y=v.y)).permute(2, 0, 1))
    assert b["paper"].shape == (2, 3, Pz, Pz) and torch.equal(b["paper"][1], expect)
    ds = open_dataset("procedural", 64, 32, seed=0)
    idx = np.array([5, 2, 9, 7])
    crops = torch.cat(list(P.real_patch_batches(ds, idx, 21, seed=3, batch=3)))
    assert crops.shape == (4, 3, 21, 21) and crops.dtype == torch.uint8
    positions = []
    for k, j in enumerate(idx):
        r, c = P.crop_position(64, 21, 3, int(j))
        assert 0 <= r <= 64 - 21 and 0 <= c <= 64 - 21
        positions.append((r, c))
        full = torch.from_numpy(np.array(ds.load_uint8(int(j)))).permute(2, 0, 1)  # the training images (pre-resized, back to 64)
        assert torch.equal(crops[k], full[:, r:r + 21, c:c + 21])
    assert len(set(positions)) > 1
    assert P.crop_position(64, 21, 3, 5) == P.crop_position(64, 21, 3, 5) != P.crop_position(64, 21, 4, 5)


def test_reals_are_at_the_reference_size_not_upsampled():
    """The real images at R are the data's preprocessing stopped at R: for the procedural data
    (rendered at F, pre-resized to R) the pre-resized image itself, not the F image shrunk."""
    from PIL import Image

    from infinitygan.data.datasets import open_dataset
    from infinitygan.data.procedural import render_landscape

    ds = open_dataset("procedural", 64, 24, seed=0)
    idx = np.array([3, 0])
    reals = torch.cat(list(P.real_batches(ds, idx, size=24)))
    assert reals.shape == (2, 3, 24, 24) and reals.dtype == torch.uint8
    for k, j in enumerate(idx):
        photo = Image.fromarray(render_landscape(ds.image_seed(int(j)), 64, 64))
        pre = np.asarray(photo.resize((24, 24), Image.Resampling.LANCZOS))
        assert np.array_equal(reals[k].permute(1, 2, 0).numpy(), pre)
        trained = ds.load_uint8(int(j))  # what training sees: 24 -> 64
        assert trained.shape == (64, 64, 3)
        shrunk = np.asarray(Image.fromarray(trained).resize((24, 24), Image.Resampling.LANCZOS))
        assert not np.array_equal(shrunk, pre)
    # without a size: the full images
    assert next(P.real_batches(ds, idx)).shape == (2, 3, 64, 64)


def test_real_indices_distinct_and_disjoint():
    a = P.real_indices(1000, 50, seed=0)
    b = P.real_indices(1000, 50, seed=1, exclude=a)
    assert len(set(a)) == 50 and len(set(b)) == 50 and not set(a) & set(b)
    assert np.array_equal(a, P.real_indices(1000, 50, seed=0))
    assert len(P.real_indices(10, 50, seed=0)) == 10
