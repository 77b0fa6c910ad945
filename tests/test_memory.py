"""Bounded memory: what the engine and the writers hold does not grow with the width.

Python-side allocations (numpy buffers, tile plans, lists) are measured with tracemalloc; the
engine's torch tensors are per tile by construction. benchmarks/memory.py measures the whole
process's peak RSS at 262,144 pixels wide (docs/benchmarks.md).
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import infinitygan.io.images as images


def _peak(model, path, width, height=32, tile=256):
    tracemalloc.start()
    try:
        model.generate_to_file(path, seed=1, width=width, height=height, tile=tile)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ext", [".tif", ".npy"])
def test_memory_does_not_grow_with_width(tiny_model, tmp_path, ext):
    small = _peak(tiny_model, tmp_path / f"a{ext}", 512)
    big = _peak(tiny_model, tmp_path / f"b{ext}", 8192)
    assert big < 1.3 * small + 2 ** 20, (small, big)


def test_png_holds_one_short_row_of_tiles(tiny_model, tmp_path, monkeypatch):
    """PNG needs whole rows: it holds one row of tiles, whose height keeps the 8-bit row buffer
    within PNG_BAND_BYTES (here 256 kB: 16-pixel rows at 8192 wide, not the 64-pixel tiles)."""
    monkeypatch.setattr(images, "PNG_BAND_BYTES", 2 ** 18)
    small = _peak(tiny_model, tmp_path / "a.png", 512, height=64)
    big = _peak(tiny_model, tmp_path / "b.png", 8192, height=64)
    band = 16 * 8192 * 3
    assert big < small + 8 * band, (small, big)  # a 64-row band alone would be 4 * band


def test_half_precision_clamps_activations(tiny_model):
    """float16 activations are clamped (StyleGAN2-ADA's conv_clamp): a huge bias stays finite."""
    import copy

    gen = copy.deepcopy(tiny_model.generator)
    with torch.no_grad():
        gen.texture.convs[3].activate.bias.fill_(1e5)
    out = type(tiny_model)(gen, tiny_model.config).generate(seed=0, width=64, height=32, dtype="float16")
    assert np.isfinite(out).all()
