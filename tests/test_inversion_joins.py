"""Inbetweening (two inverted images joined by spatial style fusion) and cyclic panoramas from
one inverted image."""
from __future__ import annotations

import numpy as np
import pytest

from infinitygan.errors import UserError
from infinitygan.inversion import Inversion, InversionConfig
from infinitygan.inversion.inbetween import inbetween, pair_region, place_pair
from infinitygan.inversion.outpaint import outpaint
from infinitygan.synthesis import Region, Synthesizer

CFG = InversionConfig(steps=3, w_samples=200)


def _image(model, seed, region):
    return Synthesizer(model.generator).render(model.canvas(seed), region)


@pytest.fixture(scope="module")
def pair(tiny_model):
    a, b = place_pair(tiny_model, (32, 24), (32, 24), 640)
    inv = Inversion(tiny_model, CFG)
    return [inv(_image(tiny_model, s, r), r) for s, r in ((4, a), (6, b))]


def test_place_pair(tiny_model):
    a, b = place_pair(tiny_model, (48, 32), (64, 24), 100)
    assert b.x - (a.x + a.width) == 100 and a.x % 16 == 0
    span = pair_region(a, b)
    assert span.width == 48 + 100 + 64 and abs(span.x + span.width / 2) <= 8
    with pytest.raises(UserError):
        place_pair(tiny_model, (48, 32), (64, 24), -1)


def test_inbetween_reproduces_both_images_and_varies_between(tiny_model, pair):
    region = pair_region(pair[0].region, pair[1].region)
    one = inbetween(tiny_model, pair, 1, region, tile=128)
    two = inbetween(tiny_model, pair, 2, region, tile=64, batch=3)
    inv = Inversion(tiny_model, CFG)
    scale = max(1.0, float(np.abs(one).max()))
    for lat in pair:  # far apart: each image is its own inversion, whatever the seed between
        r = lat.region
        want = inv.render(lat, 0)
        got = one[r.y - region.y: r.y - region.y + r.height, r.x - region.x: r.x - region.x + r.width]
        assert np.abs(got - want).max() <= 1e-4 * scale
    mid = slice(region.width // 2 - 100, region.width // 2 + 100)
    assert np.abs(one[:, mid] - two[:, mid]).mean() > 0.05
    assert np.isfinite(one).all()


def test_cyclic_panorama_from_one_image(tiny_model):
    region = tiny_model.region(32, 24)
    lat = Inversion(tiny_model, CFG)(_image(tiny_model, 4, region), region, period=512)
    assert lat.period == 512
    out = Region(region.x - 240, region.y - 4, 1024, 32)
    img = outpaint(tiny_model, lat, 3, out, tile=128)
    scale = max(1.0, float(np.abs(img).max()))
    assert np.abs(img[:, :512] - img[:, 512:]).max() <= 1e-4 * scale  # one period, joined to itself
    want = Inversion(tiny_model, CFG).render(lat, 0)
    assert np.abs(img[4:28, 240:272] - want).max() <= 1e-4 * scale and np.abs(img[4:28, 752:784] - want).max() <= 1e-4 * scale
    with pytest.raises(UserError, match="shorter than the image's footprint"):
        Inversion(tiny_model, CFG)(_image(tiny_model, 4, region), region, period=256)
