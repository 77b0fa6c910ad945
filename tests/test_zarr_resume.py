"""Outputs every rank writes and renders that resume (issue 32 sections 2 and 3):

- ``.zarr``: an OME-Zarr (NGFF 0.5) pyramid whose level 0 holds the uint8 pixels of the .png of
  the same render and whose levels are the 2x2-block means of the level below, built from the
  quarters of finished tiles in any order, by any number of writers;
- ``generate ... --resume`` after a render killed part-way (.npy, .zarr): only the missing units
  are computed, and the output equals an uninterrupted render byte for byte;
- under torchrun, every rank writes its own chunks of the .zarr.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infinitygan.errors import UserError
from infinitygan.io.images import to_uint8
from infinitygan.io.resumable import PartialNpy, partial_path
from infinitygan.io.zarr_store import ZarrPyramid, half, level_shapes, pyramid

zarr = pytest.importorskip("zarr")
REPO = Path(__file__).resolve().parents[1]


def chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(to_uint8(image).transpose(2, 0, 1))


# ------------------------------------------------------------------------------ the pyramid
def test_half_is_the_mean_of_2x2_blocks_with_odd_edges_repeated():
    a = np.array([[[0, 1, 2], [3, 4, 5], [255, 255, 7]]], np.uint8)  # (1, 3, 3)
    out = half(a)
    assert out.shape == (1, 2, 2)
    assert out[0].tolist() == [[2, 4], [255, 7]]  # (0+1+3+4+2)//4, (2+2+5+5+2)//4, (255*4+2)//4, (7*4+2)//4
    assert level_shapes(150, 333, 32, 32) == [(150, 333), (75, 167), (38, 84), (19, 42), (10, 21)]
    assert level_shapes(32, 20, 32, 32) == [(32, 20)]  # one chunk: no zoom-out level


@pytest.mark.parametrize("writers", [1, 3])
def test_pyramid_from_tiles_in_any_order_equals_the_whole_image_pyramid(tmp_path, writers):
    """Tiles written in a shuffled order by several writers (each its own store object, as ranks
    are): every level equals the 2x2-block means of the whole image, computed in memory."""
    rng = np.random.default_rng(0)
    H, W, T = 150, 333, 32
    img = rng.uniform(-1.1, 1.1, (H, W, 3)).astype(np.float32)
    ZarrPyramid(tmp_path / "p.zarr", H, W, T, T).create("key-1", "p")
    stores = [ZarrPyramid(tmp_path / "p.zarr", H, W, T, T) for _ in range(writers)]
    tiles = [(i, j) for i in range(math.ceil(H / T)) for j in range(math.ceil(W / T))]
    random.Random(writers).shuffle(tiles)
    for n, (i, j) in enumerate(tiles):
        stores[n % writers].write_tile(i, j, img[i * T:(i + 1) * T, j * T:(j + 1) * T])
    # the levels grew as tiles finished: after the last tile every chunk of every level is there
    s = stores[0]
    assert all(s.has_chunk(k, cy, cx) for k in range(len(s.shapes))
               for cy in range(s.grid(k)[0]) for cx in range(s.grid(k)[1]))
    s.mark_complete()
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    expected = pyramid(chw(img), T, T)
    assert len(expected) == 5
    for k, level in enumerate(expected):
        assert np.array_equal(group[str(k)][:], level), k
    assert group.attrs["infinitygan"] == {"key": "key-1", "tile": [T, T], "levels": 5, "complete": True}
    assert not (tmp_path / "p.zarr" / ".pieces").exists()


def test_sweep_builds_the_levels_left_between_writers(tmp_path):
    """A level chunk whose quarters were left by writers that each saw the other's missing (or a
    writer killed between its quarter and its climb) is built by the sweep, level by level."""
    H, W, T = 64, 96, 16
    img = np.random.default_rng(1).uniform(-1, 1, (H, W, 3)).astype(np.float32)
    s = ZarrPyramid(tmp_path / "s.zarr", H, W, T, T)
    s.create("k", "s")
    s._climb = lambda *a: None  # noqa: SLF001  (a writer that never climbs)
    for i in range(H // T):
        for j in range(W // T):
            s.write_tile(i, j, img[i * T:(i + 1) * T, j * T:(j + 1) * T])
    assert not s.has_chunk(1, 0, 0)
    for k in range(1, s.top + 1):
        s.sweep(k)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    for k, level in enumerate(pyramid(chw(img), T, T)):
        assert np.array_equal(group[str(k)][:], level), k


def test_ome_metadata_is_ngff_0_5(tmp_path):
    """The attributes an OME-Zarr viewer reads: validated by ome-zarr-models when installed
    (the [test] extra has it), and checked by hand in any case."""
    H, W, T = 100, 200, 32
    s = ZarrPyramid(tmp_path / "m.zarr", H, W, T, T)
    s.create("k", "m")
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["channel", "space", "space"]
    assert [d["path"] for d in ms["datasets"]] == [str(k) for k in range(len(s.shapes))]
    for k, d in enumerate(ms["datasets"]):
        scale, shift = d["coordinateTransformations"]
        assert scale == {"type": "scale", "scale": [1.0, 2.0 ** k, 2.0 ** k]}
        assert shift["translation"] == [0.0, (2 ** k - 1) / 2, (2 ** k - 1) / 2]
        arr = group[d["path"]]
        assert arr.shape == (3, *s.shapes[k]) and arr.dtype == np.uint8 and arr.chunks == (3, T, T)
    assert [c["color"] for c in ome["omero"]["channels"]] == ["FF0000", "00FF00", "0000FF"]
    models = pytest.importorskip("ome_zarr_models")
    image = models.open_ome_zarr(group)
    assert type(image).__name__ == "Image" and "v05" in type(image).__module__


# --------------------------------------------------------------------------- partial .npy
def test_partial_npy_resumes_from_its_journal_and_refuses_another_render(tmp_path):
    out = tmp_path / "a.npy"
    img = np.random.default_rng(2).normal(size=(40, 50, 3)).astype(np.float32)
    p = PartialNpy(out, 50, 40, key="k1", units=4)
    p.write(0, 0, img[:20, :25])
    p.unit_done(0)
    p.write(0, 25, img[:20, 25:])
    with open(p.journal, "a") as j:  # a journal line cut off by a kill
        j.write("1")
    p.close()
    assert not out.exists() and partial_path(out).is_file()
    with pytest.raises(UserError, match="another image"):
        PartialNpy(out, 50, 40, key="k2", units=4, resume=True)
    q = PartialNpy(out, 50, 40, key="k1", units=4, resume=True)
    assert q.done == {0}
    for g, (y, x) in enumerate([(0, 0), (0, 25), (20, 0), (20, 25)]):
        if g not in q.done:
            q.write(y, x, img[y:y + 20, x:x + 25])
            q.unit_done(g)
    assert q.commit() == out
    assert np.array_equal(np.load(out), img)
    assert not partial_path(out).exists() and not q.journal.exists()
    fresh = PartialNpy(out, 50, 40, key="k1", units=4, resume=True)  # nothing partial: a fresh start
    assert fresh.done == frozenset()
    fresh.close()
