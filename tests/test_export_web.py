"""The canvas in JavaScript (export/web/canvas.js), run in headless Chromium, equals the engine's:
stream keys bit for bit, the hashed N(0, 1) fields and the coordinates to float32 rounding, at
positions near and very far from the origin."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from browser import chromium, require_browser
from infinitygan.config import CoordConfig
from infinitygan.coords import canvas_coords
from infinitygan.latents import gaussian_field, stream_key

CANVAS_JS = Path(__file__).resolve().parents[1] / "infinitygan" / "export" / "web" / "canvas.js"


@pytest.fixture(scope="module")
def page():
    require_browser()  # skipped without Chromium; fails under CI / INFINITYGAN_REQUIRE_BROWSER=1
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, chromium(pw) as browser:
        p = browser.new_page()
        p.set_content("<html><body></body></html>")
        p.add_script_tag(content=CANVAS_JS.read_text())
        yield p


def js_field(page, key, channels, rows, cols):
    return np.array(page.evaluate(
        "([k, c, r, q]) => Array.from(InfinityCanvas.gaussianField(k, c, r.map(BigInt), q.map(BigInt)))",
        [key, channels, [str(v) for v in rows], [str(v) for v in cols]]), np.float32)


@pytest.mark.parametrize("seed,stream", [(0, "zg"), (3, "zl"), (123456789012345678901234567890, "noise5"), (-7, "zl")])
def test_stream_keys_are_bit_exact(page, seed, stream):
    assert page.evaluate("([s, n]) => InfinityCanvas.streamKey(BigInt(s), n)", [str(seed), stream]) == \
        stream_key(seed, stream)


@pytest.mark.parametrize("row0,col0", [(-3, -5), (2 ** 40 + 7, -(2 ** 52) - 3), (-(2 ** 60), 2 ** 60 - 9)])
def test_gaussian_fields_match(page, row0, col0):
    rows, cols = list(range(row0, row0 + 5)), list(range(col0, col0 + 7))
    key = stream_key(11, "zl")
    ref = gaussian_field(key, 3, torch.tensor(rows), torch.tensor(cols)).numpy().reshape(-1)
    got = js_field(page, key, 3, rows, cols)
    assert np.abs(got - ref).max() < 1e-5  # float32 log / cos of two libraries: an ulp or two


@pytest.mark.parametrize("system", ["scenery", "texture", "object"])
def test_coordinates_match(page, system):
    cfg = CoordConfig(system=system)
    coords = {"system": system, "vertical_step": cfg.vertical_step, "period_cells": cfg.period}
    for row0, col0 in ((-14, -20), (2 ** 45, -(2 ** 50))):
        ref = canvas_coords(cfg, row0, 6, col0, 9).numpy().reshape(-1)
        got = np.array(page.evaluate("([c, r, q]) => Array.from(InfinityCanvas.canvasCoords(c, BigInt(r), 6, BigInt(q), 9))",
                                     [coords, str(row0), str(col0)]), np.float32)
        assert np.abs(got - ref).max() < 1e-6, (system, row0, col0)
