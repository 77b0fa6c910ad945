"""The engine: tiling-, batching- and region-invariance, far positions, dtypes, differentiability."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infinitygan.latents import Canvas
from infinitygan.synthesis import Region, Synthesizer

TOL = 1e-4


@pytest.fixture(scope="module")
def synth(tiny_model):
    return tiny_model.synthesizer("cpu")


@pytest.fixture(scope="module")
def canvas(tiny_model):
    return tiny_model.canvas(11)


def test_tile_and_batch_do_not_change_pixels(synth, canvas):
    region = Region(-45, -70, 230, 150)
    ref = synth.render(canvas, region, tile=512)
    assert ref.std() > 0.1
    for tile, batch in [(16, 7), (64, 1), (96, 4), (100, 2), (200, 3)]:
        out = synth.render(canvas, region, tile=tile, batch=batch)
        assert np.abs(out - ref).max() <= TOL, (tile, batch)


def test_overlapping_regions_agree(synth, canvas):
    a = synth.render(canvas, Region(0, 0, 200, 120), tile=64)
    b = synth.render(canvas, Region(77, 31, 150, 130), tile=128, batch=2)
    assert np.abs(a[31:120, 77:200] - b[: 120 - 31, : 200 - 77]).max() <= TOL


def test_one_shot_equals_tiled(synth, canvas):
    region = Region(-100, -60, 180, 120)
    one = synth.render_one_shot(canvas, region)
    assert len(synth.planner.tile_plan(region, 10_000)) == 1
    assert np.abs(one - synth.render(canvas, region, tile=32, batch=5)).max() <= TOL


def test_far_regions_work_and_differ(synth, canvas):
    x = 2 ** 40
    far = synth.render(canvas, Region(x, -40, 160, 80), tile=64)
    near = synth.render(canvas, Region(0, -40, 160, 80), tile=64)
    assert np.isfinite(far).all() and far.std() > 0.1
    assert np.abs(far - near).mean() > 0.1
    # seamless far away too, and across negative coordinates
    shifted = synth.render(canvas, Region(x + 48, -40, 112, 80), tile=32, batch=3)
    assert np.abs(far[:, 48:] - shifted).max() <= TOL
    neg = synth.render(canvas, Region(-x - 7, -40, 100, 80), tile=48)
    neg2 = synth.render(canvas, Region(-x - 7 + 20, -40, 80, 80), tile=96)
    assert np.abs(neg[:, 20:] - neg2).max() <= TOL


def test_different_seeds_differ(tiny_model, synth):
    r = Region(0, -32, 64, 64)
    a = synth.render(tiny_model.canvas(1), r)
    b = synth.render(tiny_model.canvas(2), r)
    assert np.abs(a - b).mean() > 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_inference(tiny_model, dtype):
    import copy

    gen = copy.deepcopy(tiny_model.generator)
    ref = Synthesizer(copy.deepcopy(gen), "cpu").render(tiny_model.canvas(3), Region(0, -24, 80, 48))
    out = Synthesizer(gen, "cpu", dtype).render(tiny_model.canvas(3), Region(0, -24, 80, 48))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out - ref).mean() < 0.05 * np.abs(ref).mean() + 0.05


def test_render_is_differentiable_wrt_overrides(tiny_model):
    cfg = tiny_model.config.generator
    synth = Synthesizer(tiny_model.generator, "cpu")
    zl = torch.randn(cfg.zl_dim, 4, 4, requires_grad=True)
    zg = torch.randn(cfg.zg_dim, requires_grad=True)
    noise = torch.randn(1, 30, 30, requires_grad=True)
    canvas = Canvas(5, cfg.zg_dim, cfg.zl_dim, global_latent=zg)
    canvas.override_zl(0, 0, zl)
    g = synth.geometry
    ya, xa = g.ts_ranges(0, 4)[7][0], g.ts_ranges(0, 4)[7][0]
    canvas.override_noise(7, ya, xa, noise)
    img = synth.render_tensor(canvas, Region(0, 0, 64, 64), tile=32)
    assert img.shape == (3, 64, 64)
    img.square().mean().backward()
    assert zl.grad is not None and zl.grad.abs().sum() > 0
    assert zg.grad is not None and zg.grad.abs().sum() > 0
    assert noise.grad is not None and noise.grad.abs().sum() > 0
    # the differentiable path gives the same pixels as the fast one
    with torch.no_grad():
        fast = synth.render(canvas, Region(0, 0, 64, 64), tile=48)
    assert np.abs(img.detach().permute(1, 2, 0).numpy() - fast).max() <= TOL


def test_overrides_replace_hashed_latents(tiny_model):
    cfg = tiny_model.config.generator
    c = Canvas(9, cfg.zg_dim, cfg.zl_dim)
    base = c.zl(-3, 10, 5, 10)
    vals = torch.full((cfg.zl_dim, 2, 3), 7.0)
    c.override_zl(0, 6, vals)
    new = c.zl(-3, 10, 5, 10)
    assert torch.equal(new[:, 3:5, 1:4], vals)
    mask = torch.ones_like(new, dtype=torch.bool)
    mask[:, 3:5, 1:4] = False
    assert torch.equal(new[mask], base[mask])


def test_style_paths_agree(tiny_model):
    """Shared, per-sample and per-pixel styles are one modulated conv."""
    conv = tiny_model.generator.texture.convs[2].conv  # an upsampling conv
    conv1 = tiny_model.generator.texture.convs[3].conv
    torch.manual_seed(0)
    for c in (conv, conv1):
        x = torch.randn(2, c.in_ch, 9, 9)
        s = torch.randn(1, c.modulation.weight.shape[1])
        shared = c(x, s)
        per_sample = c(x, s.expand(2, -1))
        per_pixel = c(x, s[:, :, None, None].expand(2, -1, 9, 9))
        assert (shared - per_sample).abs().max() < 1e-4
        assert (shared - per_pixel).abs().max() < 1e-4


def test_patch_by_patch_structure_equals_shared(synth, canvas):
    """The authors' scheme (GS per 101-pixel patch) gives the same pixels as band-shared GS."""
    region = Region(-20, -30, 200, 110)
    shared = synth.render(canvas, region, tile=96)
    own = np.empty_like(shared)
    paper = synth.planner.render_plan(synth.planner.paper_plan(region), 1, shared_structure=False)
    for y, band in synth.bands(canvas, paper):
        own[y: y + band.shape[0]] = band
    assert np.abs(own - shared).max() <= TOL


def test_tiles_split_evenly_and_cover_the_region_once(synth):
    region = Region(-1030, -510, 2000, 2048)
    plan = synth.planner.tile_plan(region, 512)
    tiles = list(plan)
    assert {(t.rows, t.cols) for t in tiles} == {plan.window}
    # 2048 rows -> 4 tiles of 512; 2000 columns -> 4 tiles of 512 (the last one cropped to 464)
    assert (plan.rows, plan.cols, plan.tile_height, plan.tile_width) == (4, 4, 512, 512)
    # a window starts on the lattice at or before its tile: y = -510 is 2 pixels past a cell, so
    # 2 + 512 + the 75-pixel shrink need 37 cells; x = -1030 is 10 past one: 38 cells
    assert plan.window == (37, 38) and {t.oy for t in tiles} == {2} and {t.ox for t in tiles} == {10}
    cover = np.zeros((region.height, region.width), np.int32)
    for t in tiles:
        assert t.x1 - t.x0 <= 512 and t.ox + t.x1 - t.x0 <= synth.geometry.ts_output_size(t.cols)
        cover[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] += 1
    assert (cover == 1).all()


def test_plans_are_lazy_at_any_width(synth):
    plan = synth.planner.tile_plan(Region(0, 0, 2 ** 31 - 1, 256), 512)
    assert len(plan) == plan.cols == 4194304
    last = plan.tile(0, plan.cols - 1)
    assert last.x1 == 2 ** 31 - 1 and last.x0 == 512 * (plan.cols - 1)


def test_default_tiling_flops_close_to_one_shot(tiny_model):
    """Default tiling costs at most 1.15 x the FLOPs of one forward pass over the region."""
    from torch.utils.flop_counter import FlopCounterMode

    synth = tiny_model.synthesizer("cpu")
    canvas = tiny_model.canvas(0)
    region = tiny_model.region(512, 512)

    planner = synth.planner

    def flops(tiles, shared=True):
        with FlopCounterMode(display=False) as fc:
            for _ in synth.tiles(canvas, planner.render_plan(tiles, 1, shared)):
                pass
        return fc.get_total_flops()

    one = flops(planner.one_shot_plan(region))
    assert flops(planner.tile_plan(region, 256)) <= 1.15 * one
    # the authors' 101-pixel patches, GS per patch, cost far more
    assert flops(planner.paper_plan(region), shared=False) > 1.4 * one


def test_reduced_precision_does_not_cast_the_callers_model(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.generator.state_dict().items()}
    tiny_model.generate(seed=1, width=32, height=32, dtype="bfloat16")
    after = tiny_model.generator.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())
