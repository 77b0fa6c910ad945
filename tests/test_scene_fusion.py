"""Spatial style fusion: the field's weights, calibration, and fused synthesis through tiles."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infinitygan.errors import UserError
from infinitygan.scene.bind import build_fusion, default_kernel
from infinitygan.scene.calibration import Calibration
from infinitygan.scene.field import Box, Mask, Point, StyleField
from infinitygan.scene.fusion import Fusion, fused_forward
from infinitygan.scene.scene import Scene, StyleCentre
from infinitygan.synthesis import Region

TOL = 1e-4


def render_fused(synth, canvas, fusion, region, tile, batch=1):
    """The engine on the canvas with a style fusion attached."""
    return synth.render(dataclasses.replace(canvas, fusion=fusion), region, tile, batch)


def render_per_tile(synth, canvas, fusion, region, tile, batch=1):
    """An independent tile loop: GS per tile on its own window (fused_forward), no shared GS."""
    tiles = list(synth.planner.tile_plan(region, tile))
    out = np.zeros((region.height, region.width, 3), np.float32)
    zg, wplus = synth.styles(canvas)
    with torch.no_grad():
        for i in range(0, len(tiles), batch):
            chunk = tiles[i: i + batch]
            zl, coords, noises = inputs(synth, canvas, chunk)
            wins = [(t.row_cell, t.rows, t.col_cell, t.cols) for t in chunk]
            rgb = fused_forward(synth.generator, fusion, zg, wplus, zl, coords, noises, wins).numpy()
            for t, img in zip(chunk, rgb):
                piece = img[:, t.oy: t.oy + t.y1 - t.y0, t.ox: t.ox + t.x1 - t.x0]
                out[t.y0 - region.y: t.y1 - region.y, t.x0 - region.x: t.x1 - region.x] = piece.transpose(1, 2, 0)
    return out


def inputs(synth, canvas, tiles):
    """zl, coordinates (from the canvas: periodic when it is) and noises of tiles."""
    m = synth.geometry.gs_margin
    zl, coords = [], []
    for t in tiles:
        r0, c0, H, W = t.row_cell - m, t.col_cell - m, t.rows + 2 * m, t.cols + 2 * m
        zl.append(canvas.zl(r0, H, c0, W))
        coords.append(canvas.coords(synth.cfg.coords, r0, H, c0, W))
    return torch.stack(zl), torch.stack(coords), synth._noises(canvas, tiles)


def brute_weights(fld: StyleField, y0, h, x0, w):
    """The mean filter applied directly to the one-hot map: (N, h, w) for labels 0..N-1."""
    r = fld.radius
    lab = fld.labels_window(y0 - r, h + 2 * r, x0 - r, w + 2 * r)
    n = int(lab.max()) + 1
    onehot = F.one_hot(lab, n).permute(2, 0, 1).double()[None]
    k = torch.ones(n, 1, fld.kernel, fld.kernel, dtype=torch.float64) / fld.kernel ** 2
    return F.conv2d(onehot, k, groups=n)[0]


def test_integral_image_weights_equal_the_mean_filter():
    mask = np.zeros((9, 13), bool)
    mask[2:7, 3:11] = True
    mask[4, 0] = True
    fld = StyleField([Point(-20, 3), Point(15, -4), Box(-5, 10, 12, 7), Mask(20, -10, mask)],
                     [0, 1, 2, 3], None, kernel=9)
    y0, h, x0, w = -16, 40, -30, 70
    ref = brute_weights(fld, y0, h, x0, w)
    win = fld.window(y0, y0 + h - 1, x0, x0 + w - 1)
    got = win.weights(torch.arange(h) + y0, torch.arange(w) + x0)
    full = torch.zeros_like(ref)
    full[win.present] = got.double()
    assert torch.allclose(full, ref, atol=1e-7)
    assert torch.allclose(full.sum(0), torch.ones(h, w, dtype=torch.float64), atol=1e-6)
    # strided positions (a coarse lattice) read the same values
    sub = win.weights(torch.arange(0, h, 4) + y0, torch.arange(1, w, 8) + x0)
    assert torch.allclose(sub, got[:, ::4, 1::8])


def test_labels_far_from_origin_and_nearest_point():
    far = 2 ** 40
    fld = StyleField([Point(far - 10, 0), Point(far + 10, 0)], [0, 1], None, kernel=3)
    lab = fld.labels_window(-1, 3, far - 3, 6)
    assert lab[:, :4].eq(0).all() and lab[:, 4:].eq(1).all()  # x = far + 0 ties: first point
    far_neg = StyleField([Point(-far, 5), Point(-far, -5)], [0, 1], None, kernel=3)
    assert far_neg.point_label(3, -far + 7) == 0 and far_neg.point_label(-3, -far - 7) == 1


def test_single_label_is_exact_or_conservative():
    g = torch.Generator().manual_seed(0)
    mask = np.ones((5, 5), bool)
    mask[0, 0] = False
    fld = StyleField([Point(0, 0), Point(60, 20), Point(-40, 50), Box(100, -30, 40, 40), Mask(-80, -70, mask)],
                     [0, 1, 2, 3, 4], None, kernel=5)
    hits = 0
    for _ in range(200):
        y0, x0 = (int(v) for v in torch.randint(-120, 120, (2,), generator=g))
        h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=g))
        r = fld.radius
        lab = fld.labels_window(y0 - r, h + 2 * r, x0 - r, w + 2 * r)
        got = fld.single_label(y0, y0 + h - 1, x0, x0 + w - 1)
        if got is not None:
            hits += 1
            assert lab.eq(got).all()
    assert hits > 20


def test_single_label_periodic_matches_labels():
    g = torch.Generator().manual_seed(1)
    P = 320
    fld = StyleField([Point(10, 0), Point(170, 0), Point(300, 40), Box(250, -20, 100, 30)], [0, 1, 2, 3], None,
                     kernel=7, period=P)
    # periodic labels
    a = fld.labels_window(-30, 60, -500, 200)
    b = fld.labels_window(-30, 60, -500 + 7 * P, 200)
    assert torch.equal(a, b)
    for _ in range(200):
        y0, x0 = (int(v) for v in torch.randint(-100, 100, (1,), generator=g)), int(torch.randint(-2000, 2000, (1,), generator=g))
        y0 = next(y0)
        h, w = (int(v) for v in torch.randint(1, 80, (2,), generator=g))
        r = fld.radius
        got = fld.single_label(y0, y0 + h - 1, x0, x0 + w - 1)
        if got is not None:
            assert fld.labels_window(y0 - r, h + 2 * r, x0 - r, w + 2 * r).eq(got).all()


def test_calibration_positions_follow_the_lattice(tiny_model):
    geo = tiny_model.generator.geometry
    cal = Calibration(geo)
    # output pixels: level K index o sits at pixel o - pixel_offset
    s, n = 5, 7
    (a, b) = geo.ts_ranges(s, n)[-1]
    assert cal.pixels(geo.n_up, a, b).tolist() == list(range(16 * s, 16 * s + geo.ts_output_size(n)))
    # an upsampling conv puts input i at output 2 i + 1 (the same pixel)
    for lev in range(geo.n_up):
        for i in (-3, 0, 11):
            assert cal.pixel_of(lev, i) == cal.pixel_of(lev + 1, 2 * i + 1)
    for lev in range(geo.n_up + 1):
        i0, i1 = cal.index_range(lev, -37, 55)
        px = cal.pixels(lev, i0, i1)
        assert px.min() >= -37 and px.max() < 55
        assert cal.pixel_of(lev, i0 - 1) < -37 and cal.pixel_of(lev, i1) >= 55
    assert default_kernel(geo.lattice) == 127


@pytest.fixture(scope="module")
def synth(tiny_model):
    return tiny_model.synthesizer("cpu")


def test_single_centre_and_same_style_centres_are_plain(tiny_model, synth):
    canvas = tiny_model.canvas(4)
    region = Region(-40, -30, 96, 64)
    plain = synth.render(canvas, region, tile=64)
    # one centre with the canvas's own seed: no fusion at all
    assert build_fusion(Scene(4, [StyleCentre(Point(3, 3), seed=4)]), synth.generator) is None
    # two labels holding the same style, transition inside the region: the per-position path
    fld = StyleField([Point(-30, 0), Point(40, 10)], [0, 1], None, kernel=15)
    zg = canvas.zg()
    zg2 = torch.cat([zg, zg])
    fusion = Fusion(fld, Calibration(synth.geometry), zg2, synth.generator.styles(zg2).detach(),
                    [synth.generator.texture.rgb_slot(k) for k in range(4)])
    assert fusion.gs_label(-5, 20, -5, 20) is None  # the fused path really runs
    out = render_fused(synth, canvas, fusion, region, tile=48)
    # float32 rounding of the per-position path: 1e-5 of the image's range (this random model's
    # outputs reach ~10; a trained model's are in [-1, 1])
    assert np.abs(out - plain).max() <= 1e-5 * max(1.0, np.abs(plain).max())


@pytest.mark.parametrize("where", ["near", "far"])
def test_fused_tiles_and_batches_equal_one_shot(tiny_model, synth, where):
    x0 = 0 if where == "near" else 2 ** 40 + 16 * 7
    y0 = -40
    mask = np.zeros((20, 30), bool)
    mask[3:17, 5:28] = True
    mask[0:6, 0:4] = True
    scene = Scene(7, [StyleCentre(Point(x0 + 10, 0), seed=1),
                      StyleCentre(Point(x0 + 150, 10), seed=2),
                      StyleCentre(Box(x0 + 60, y0 + 5, 40, 30), seed=3),
                      StyleCentre(Mask(x0 + 120, y0 + 40, mask), seed=5)], kernel=31)
    fusion = build_fusion(scene, synth.generator)
    canvas = tiny_model.canvas(7)
    region = Region(x0, y0, 160, 80)
    ref = render_fused(synth, canvas, fusion, region, tile=synth.planner.one_shot_tile(region))
    assert ref.std() > 0.05
    out = render_fused(synth, canvas, fusion, region, tile=48, batch=3)
    assert np.abs(out - ref).max() <= TOL
    out = render_per_tile(synth, canvas, fusion, region, tile=64, batch=2)
    assert np.abs(out - ref).max() <= TOL
    # the styles really change the image (seed 7's own style is not among them)
    assert np.abs(ref - synth.render(canvas, region, tile=96)).max() > 1e-2


def test_locality_far_from_transitions_is_plain(tiny_model, synth):
    """A region farther than filter radius + receptive field from the transition equals plain synthesis."""
    k = 31
    scene = Scene(2, [StyleCentre(Point(-2000, 0), seed=9), StyleCentre(Point(2000, 0), seed=5)], kernel=k)
    fusion = build_fusion(scene, synth.generator)
    canvas = tiny_model.canvas(2)
    # the transition is the line x = 0; the output depends on zl within (12 + 3) cells (~ 240 px)
    region = Region(-96 - 400, -30, 96, 64)
    out = render_fused(synth, canvas, fusion, region, tile=48, batch=2)
    styled = tiny_model.canvas(2)
    styled.global_latent = tiny_model.canvas(9).zg()[0]
    plain = synth.render(styled, region, tile=96)
    assert np.abs(out - plain).max() <= TOL
    # and near the transition it is neither style
    near = Region(-48, -30, 96, 64)
    f = render_fused(synth, canvas, fusion, near, tile=96)
    assert np.abs(f - synth.render(styled, near, tile=96)).max() > 1e-2


def test_bad_fields():
    with pytest.raises(UserError, match="overlap"):
        StyleField([Box(0, 0, 10, 10), Box(5, 5, 10, 10)], [0, 1], 2, kernel=3)
    with pytest.raises(UserError, match="same point"):
        StyleField([Point(0, 0), Point(0, 0)], [0, 1], None, kernel=3)
    with pytest.raises(UserError, match="odd"):
        StyleField([Point(0, 0)], [0], None, kernel=4)
    m = np.zeros((4, 4), bool)
    m[0, 0] = True
    StyleField([Mask(0, 0, m), Mask(1, 1, m)], [0, 1], 2, kernel=3)  # bounding boxes overlap, pixels do not
    with pytest.raises(UserError, match="overlap"):
        StyleField([Box(-5, 0, 10, 10), Box(318, 2, 4, 4)], [0, 1], 2, kernel=3, period=320)


def _brute_labels(fld, y0, h, x0, w):
    """Nearest point of every pixel with Python integers (ties: the first point)."""
    pts, P = fld._points.tolist(), fld.period
    out = torch.empty(h, w, dtype=torch.int64)
    for j in range(h):
        for i in range(w):
            best = None
            for k, (px, py) in enumerate(pts):
                dx = x0 + i - px
                if P:
                    dx = min(dx % P, P - dx % P)
                d = (y0 + j - py) ** 2 + dx ** 2
                if best is None or d < best:
                    best, lab = d, fld._point_labels[k]
            out[j, i] = lab
    return out


def test_nearest_point_labels_are_exact_far_away():
    """Squared distances beyond 2^53 do not round: two points 10 px apart vertically seen from
    2^40 px away still split the rows between them (float64 would tie them all to the first)."""
    fld = StyleField([Point(0, 0), Point(0, 10)], [0, 1], None, 3)
    lab = fld.labels_window(0, 11, 2 ** 40, 4)
    assert lab[:5].eq(0).all() and lab[6:].eq(1).all() and lab[5].eq(0).all()  # row 5: a tie, the first wins
    g = torch.Generator().manual_seed(0)
    for far, period in ((2 ** 40, None), (2 ** 59, None), (2 ** 40, 2224)):
        c = int(torch.randint(-far, far, (1,), generator=g))
        off = torch.randint(-40, 40, (4, 2), generator=g).tolist()
        pts = [Point(c + dx, -c + dy) for dx, dy in off] + [Point(c + off[0][0] + 7, -c + off[0][1])]
        fld = StyleField(pts, list(range(len(pts))), None, 3, period)
        y0, x0 = -c - 20, c - 20
        assert torch.equal(fld.labels_window(y0, 13, x0, 17), _brute_labels(fld, y0, 13, x0, 17)), (far, period)
