"""Cyclic panoramas and regional resampling: periodic and reseeded canvases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infinitygan.coords import canvas_coords
from infinitygan.errors import UserError
from infinitygan.scene.bind import build_canvas, build_fusion
from infinitygan.scene.field import Point
from infinitygan.scene.scene import Resample, Scene, StyleCentre
from infinitygan.synthesis import Region

from test_scene_fusion import render_fused


@pytest.fixture(scope="module")
def synth(tiny_model):
    return tiny_model.synthesizer("cpu")


def test_plain_scene_canvas_is_the_plain_canvas(tiny_model):
    gen = tiny_model.generator
    a, b = build_canvas(Scene(5), gen), tiny_model.canvas(5)
    assert torch.equal(a.zl(-3, 4, 2 ** 40, 6), b.zl(-3, 4, 2 ** 40, 6))
    assert torch.equal(a.noise(5, 1, 3, -7, 9), b.noise(5, 1, 3, -7, 9))
    cfg = tiny_model.config.generator.coords
    assert torch.equal(a.coords(cfg, -1, 3, 100, 50), canvas_coords(cfg, -1, 3, 100, 50))


@pytest.mark.parametrize("P", [512, 16 * 139])
def test_periodic_canvas_inputs(tiny_model, P):
    c = build_canvas(Scene(3, cyclic=P), tiny_model.generator)
    n = P // 16
    assert torch.equal(c.zl(0, 2, -5, 7), c.zl(0, 2, -5 + 3 * n, 7))
    for layer in range(8):
        per = n * 2 ** (layer // 2 + 1)
        assert torch.equal(c.noise(layer, 2, 2, 11, 5), c.noise(layer, 2, 2, 11 - per, 5))
    cfg = tiny_model.config.generator.coords
    a, b = c.coords(cfg, 0, 2, -3, 9), c.coords(cfg, 0, 2, -3 + 5 * n, 9)
    assert torch.allclose(a, b, atol=1e-7)
    if P % (16 * 139) == 0:  # natively periodic: the plain coordinates
        assert torch.equal(a, canvas_coords(cfg, 0, 2, -3, 9))


@pytest.mark.parametrize("P", [512, pytest.param(16 * 139, marks=pytest.mark.slow)])
def test_cyclic_two_periods_are_identical(tiny_model, synth, P):
    scene = Scene(8, cyclic=P)
    canvas = build_canvas(scene, synth.generator)
    region = Region(-37 * 16 + 3, -16, 2 * P, 32)
    img = render_fused(synth, canvas, None, region, tile=512, batch=2)
    assert img.std() > 0.05
    assert np.abs(img[:, :P] - img[:, P:]).max() <= 1e-5
    # and the whole panorama depends on where it starts only by a rotation
    shifted = render_fused(synth, canvas, None, Region(region.x + 160, region.y, P, 32), tile=256)
    assert np.abs(np.roll(img[:, :P], -160, axis=1) - shifted).max() <= 1e-4


def test_cyclic_fusion_wraps_the_centres(tiny_model, synth):
    P = 512
    scene = Scene(1, [StyleCentre(Point(40, 0), seed=2), StyleCentre(Point(300, 0), seed=3),
                      StyleCentre(Point(460, 0), seed=4)], cyclic=P, kernel=31)
    canvas, fusion = build_canvas(scene, synth.generator), build_fusion(scene, synth.generator)
    img = render_fused(synth, canvas, fusion, Region(-64, -16, 2 * P, 32), tile=256, batch=2)
    assert np.abs(img[:, :P] - img[:, P:]).max() <= 1e-5
    plain = render_fused(synth, canvas, None, Region(-64, -16, P, 32), tile=256)
    assert np.abs(img[:, :P] - plain).max() > 1e-2


def test_resampling_changes_only_the_region_and_its_receptive_field(tiny_model, synth):
    region = Region(0, -24, 1024, 48)
    rx, rw = 448, 96
    base = render_fused(synth, build_canvas(Scene(4), synth.generator), None, region, tile=512)
    scene = Scene(4, resample=[Resample(rx, -200, rw, 400, seed=77)])
    out = render_fused(synth, build_canvas(scene, synth.generator), None, region, tile=512)
    cols = np.nonzero(np.abs(out - base).max(axis=(0, 2)) > 0)[0]
    geo = synth.geometry
    margin = geo.lattice * (geo.gs_margin + 3)  # GS margin in cells + GT's reach on zS, in pixels
    assert cols.size > rw
    assert cols.min() >= rx - margin and cols.max() < rx + rw + margin
    assert np.abs(out[:, rx + rw // 2] - base[:, rx + rw // 2]).max() > 1e-2


def test_bad_canvas_scenes(tiny_model):
    gen = tiny_model.generator
    with pytest.raises(UserError, match="multiple of 16"):
        Scene(0, cyclic=100)
    with pytest.raises(UserError, match="multiple of 16"):
        Scene(0, cyclic=-32)
    with pytest.raises(UserError, match="at least"):
        build_canvas(Scene(0, cyclic=16), gen)
    with pytest.raises(UserError, match="overlap"):
        build_canvas(Scene(0, resample=[Resample(0, 0, 10, 10, 1), Resample(5, 5, 10, 10, 2)]), gen)
    with pytest.raises(UserError, match="overlap"):
        build_canvas(Scene(0, cyclic=320, resample=[Resample(0, 0, 10, 10, 1), Resample(315, 5, 10, 10, 2)]), gen)


@pytest.mark.slow
@pytest.mark.parametrize("P", [1024, 16 * 139])
def test_cyclic_wrap_gradient_is_like_interior_columns_bundled(P):
    """Across 20 seeds of the bundled model, the mean |horizontal gradient| across the wrap column
    is within 1.5x the median over interior columns."""
    import infinitygan as ig
    from infinitygan.scene import render

    model = ig.load_model()
    grads = []
    for seed in range(20):
        img = render(model, Scene(seed, cyclic=P), width=P, height=64, device="cpu")
        grads.append(np.abs(np.roll(img, -1, axis=1) - img).mean(axis=(0, 2)))
    g = np.mean(grads, axis=0)
    assert g[-1] <= 1.5 * np.median(g[:-1])
