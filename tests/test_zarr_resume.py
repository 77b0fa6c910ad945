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


def test_zarr_through_the_ordinary_writers_replaces_only_a_store(tmp_path):
    """``save_image`` / ``write_tiles`` to .zarr (one process: the ONNX runtime, outpainting):
    the same pyramid, built beside the target and renamed into place; an older store is replaced,
    a folder that is not a store is refused in one line."""
    from infinitygan.io.images import check_output, save_image

    img = np.random.default_rng(3).uniform(-1, 1, (300, 700, 3)).astype(np.float32)
    out = tmp_path / "s.zarr"
    save_image(out, img)
    save_image(out, img * 0.5)  # replaces the store
    group = zarr.open_group(str(out), mode="r")
    for k, level in enumerate(pyramid(chw(img * 0.5), 256, 256)):
        assert np.array_equal(group[str(k)][:], level), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # nothing partial or old left
    (tmp_path / "folder.zarr").mkdir()
    with pytest.raises(UserError, match="not a Zarr store"):
        check_output(tmp_path / "folder.zarr", 10, 10)


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


# ----------------------------------------------------------------------- generate, resumed
GENERATE = ["--seed", "3", "--width", "200", "--height", "120", "--tile", "32", "--x", "-37", "--y", "-50",
            "--device", "cpu", "--quiet"]

#: counts the tiles each process renders (Synthesizer.tiles) into $COUNT_DIR/tiles-PID; with
#: $KILL_AFTER set, the process of rank $KILL_RANK (default 0) kills itself (SIGKILL) once it has
#: written that many tiles of its own (the write of the next one never starts)
INJECT = """
import os, signal
count_dir = os.environ.get("COUNT_DIR")
if count_dir:
    import infinitygan.synthesis as s

    _tiles = s.Synthesizer.tiles
    kill_after = int(os.environ.get("KILL_AFTER", "-1"))
    killer = os.environ.get("RANK", "0") == os.environ.get("KILL_RANK", "0")

    def tiles(self, *a, **k):
        n = 0
        for item in _tiles(self, *a, **k):
            if killer and n == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            n += 1
            with open(os.path.join(count_dir, f"tiles-{os.getpid()}"), "a") as f:
                f.write("x")
            yield item

    s.Synthesizer.tiles = tiles
"""


def _env(tmp_path: Path, **extra) -> dict:
    inject = tmp_path / "inject"
    inject.mkdir(exist_ok=True)
    (inject / "sitecustomize.py").write_text(INJECT)
    counts = tmp_path / "counts"
    counts.mkdir(exist_ok=True)
    for p in counts.iterdir():
        p.unlink()
    env = dict(os.environ, OMP_NUM_THREADS="1", COUNT_DIR=str(counts), **{k: str(v) for k, v in extra.items()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(inject), str(REPO), os.environ.get("PYTHONPATH")) if p)
    return env


def _rendered(tmp_path: Path) -> int:
    return sum(len(p.read_text()) for p in (tmp_path / "counts").iterdir())


def _generate(model, out: str, tmp_path: Path, *extra: str, ranks: int = 1, **env) -> subprocess.CompletedProcess:
    args = ["-m", "infinitygan", "generate", "--model", str(model), *GENERATE, "--out", out, *extra]
    if ranks > 1:
        args = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), *args]
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=300)


def _units(model_file) -> int:
    from infinitygan.api import load_model
    from infinitygan.render import RenderOptions

    model = load_model(model_file)
    synth = RenderOptions(tile=32, device="cpu").synthesizer(model)
    return sum(1 for _ in synth.planner.plan(model.region(200, 120, -37, -50), 32).units())


@pytest.mark.parametrize("ext", ["npy", "zarr"])
def test_a_killed_render_resumes_to_the_bytes_of_an_uninterrupted_one(tiny_model_file, tmp_path, ext):
    from infinitygan.cli import main

    assert main(["generate", "--model", str(tiny_model_file), *GENERATE, "--out", str(tmp_path / f"one.{ext}")]) == 0
    tiles = math.ceil(120 / 32) * math.ceil(200 / 32)  # the plan's grid: 4 x 7 tiles of 32 pixels
    r = _generate(tiny_model_file, f"cut.{ext}", tmp_path, KILL_AFTER=9)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert not (tmp_path / f"cut.{ext}").exists() and partial_path(tmp_path / f"cut.{ext}").exists()
    r = _generate(tiny_model_file, f"cut.{ext}", tmp_path, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    redone = _rendered(tmp_path)
    assert 0 < redone < tiles - 9 + 8  # the missing units only (the one cut by the kill computed whole)
    assert not partial_path(tmp_path / f"cut.{ext}").exists()
    if ext == "npy":
        assert (tmp_path / "cut.npy").read_bytes() == (tmp_path / "one.npy").read_bytes()
    else:
        a = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")
        b = zarr.open_group(str(tmp_path / "cut.zarr"), mode="r")
        assert a.attrs["infinitygan"] == b.attrs["infinitygan"]  # the same render (key), complete
        assert a.attrs["ome"]["multiscales"][0]["datasets"] == b.attrs["ome"]["multiscales"][0]["datasets"]
        for k in range(len(a.attrs["ome"]["multiscales"][0]["datasets"])):
            assert np.array_equal(a[str(k)][:], b[str(k)][:]), k


def test_resume_refuses_formats_that_cannot_and_another_render(tiny_model_file, tmp_path, capsys):
    from infinitygan.cli import main

    for ext, why in (("png", "one compressed stream"), ("tif", "indexed at the end"), ("jpg", "whole image")):
        assert main(["generate", "--model", str(tiny_model_file), *GENERATE, "--out", str(tmp_path / f"a.{ext}"),
                     "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--resume needs a .npy or .zarr output" in err[0] and why in err[0], err
    r = _generate(tiny_model_file, "b.zarr", tmp_path, KILL_AFTER=3)
    assert r.returncode == -signal.SIGKILL
    assert main(["generate", "--model", str(tiny_model_file), *[a if a != "3" else "4" for a in GENERATE],
                 "--out", str(tmp_path / "b.zarr"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another image" in err[0], err


def test_zarr_level_0_holds_the_png_pixels(tiny_model_file, tmp_path):
    from PIL import Image

    from infinitygan.cli import main

    for ext in ("png", "zarr"):
        assert main(["generate", "--model", str(tiny_model_file), *GENERATE, "--out", str(tmp_path / f"o.{ext}")]) == 0
    png = np.asarray(Image.open(tmp_path / "o.png"))
    group = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    assert np.array_equal(group["0"][:].transpose(1, 2, 0), png)
    levels = pyramid(np.ascontiguousarray(png.transpose(2, 0, 1)), 32, 32)
    assert len(levels) == 4  # 120 x 200 in 32-pixel chunks: 60 x 100, 30 x 50, 15 x 25
    for k, level in enumerate(levels):
        assert np.array_equal(group[str(k)][:], level), k
    assert group.attrs["infinitygan"]["complete"] is True
    assert sorted(p.name for p in (tmp_path / "o.zarr").iterdir()) == ["0", "1", "2", "3", "zarr.json"]


def test_two_ranks_write_their_own_chunks_killed_and_resumed(tiny_model_file, tmp_path):
    """`torchrun --nproc-per-node 2 ... --out x.zarr`: the store equals one process's (level 0 =
    its .png); each rank rendered about half the units; a rank killed part-way fails the run,
    and `--resume` under two ranks again gives the same store, computing only what was missing."""
    from PIL import Image

    from infinitygan.cli import main

    assert main(["generate", "--model", str(tiny_model_file), *GENERATE, "--out", str(tmp_path / "one.png")]) == 0
    png = np.asarray(Image.open(tmp_path / "one.png"))
    r = _generate(tiny_model_file, "two.zarr", tmp_path, ranks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    per_rank = sorted(len(p.read_text()) for p in (tmp_path / "counts").iterdir())
    total = sum(per_rank)
    assert len(per_rank) == 2 and per_rank[0] >= total // 3, per_rank  # both ranks rendered
    two = zarr.open_group(str(tmp_path / "two.zarr"), mode="r")
    assert np.array_equal(two["0"][:].transpose(1, 2, 0), png)
    levels = pyramid(np.ascontiguousarray(png.transpose(2, 0, 1)), 32, 32)
    for k, level in enumerate(levels):
        assert np.array_equal(two[str(k)][:], level), k

    r = _generate(tiny_model_file, "cut.zarr", tmp_path, ranks=2, KILL_AFTER=4, KILL_RANK=1)
    assert r.returncode != 0
    assert partial_path(tmp_path / "cut.zarr").is_dir() and not (tmp_path / "cut.zarr").exists()
    r = _generate(tiny_model_file, "cut.zarr", tmp_path, "--resume", ranks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 0 < _rendered(tmp_path) < total
    cut = zarr.open_group(str(tmp_path / "cut.zarr"), mode="r")
    for k in range(len(levels)):
        assert np.array_equal(cut[str(k)][:], two[str(k)][:]), k
