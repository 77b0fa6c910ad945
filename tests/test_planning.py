"""The render planner: torch-free, and the one plan every runner runs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from infinitygan.planning import Planner, RenderPlan, batches
from infinitygan.tiling import Region

NO_TORCH = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
from infinitygan.config import load_config
from infinitygan.geometry import Geometry
from infinitygan.planning import Planner
from infinitygan.render.options import RenderOptions
from infinitygan.tiling import Region
import infinitygan.export.runtime  # the ONNX runner: plans and options without torch

cfg = load_config("tiny").generator
planner = Planner(Geometry(cfg.n_up, cfg.gs_layers, cfg.gs_kernel), cfg, "cpu", 4, 1.0)
options = RenderOptions(tile=None, batch=2, device="cpu", max_memory_mb=1.0)
plan = planner.file_plan(Region(-37, -50, 2000, 120), "out.png", options.tile, options.batch)
print(plan.tiles.tile_height, plan.tiles.tile_width, plan.batch, plan.chunk, len(list(plan.units())))
"""


def test_the_planner_and_the_options_import_no_torch(tiny_model):
    r = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # the same plan as the engine's planner (which the synthesizer built with torch)
    synth = tiny_model.synthesizer("cpu", max_memory_mb=1.0)
    plan = synth.planner.file_plan(Region(-37, -50, 2000, 120), "out.png", None, 2)
    want = (plan.tiles.tile_height, plan.tiles.tile_width, plan.batch, plan.chunk, len(list(plan.units())))
    assert tuple(int(v) for v in r.stdout.split()) == want


def test_the_budget_picks_the_tile_and_the_chunks(tiny_model):
    """A smaller budget gives smaller tiles and fewer tiles per GS pass, never over the budget
    (the default tile's working memory fits; a unit's GS window fits half of it)."""
    planner = tiny_model.synthesizer("cpu").planner
    tiles = []
    for mb in (0.25, 1.0, 4.0, 256.0):
        p = Planner(planner.geometry, planner.config, "cpu", 4, mb)
        t = p.auto_tile()
        n = -(-(t + p.geometry.shrink) // p.geometry.lattice)
        assert t == p.unit or p.working_bytes(n, n) <= mb * 2 ** 20
        tiles.append(t)
    assert tiles == sorted(tiles) and tiles[0] < tiles[-1] <= 512
    region = Region(0, 0, 8192, 64)
    small = Planner(planner.geometry, planner.config, "cpu", 4, 0.25).plan(region, 64)
    big = Planner(planner.geometry, planner.config, "cpu", 4, 256.0).plan(region, 64)
    assert 1 <= small.chunk < big.chunk


def test_units_cover_the_plan_once_and_batches_span_rows(tiny_model):
    planner = tiny_model.synthesizer("cpu").planner
    plan = planner.plan(Region(-100, -60, 300, 200), 32, 3)
    seen = [(t.i, t.j) for unit in plan.unit_tiles() for t in unit]
    assert seen == [(t.i, t.j) for t in plan.tiles] and len(seen) == len(plan)
    assert all(j1 - j0 <= plan.chunk for _, j0, j1 in plan.units())
    own = planner.render_plan(plan.tiles, 3, shared_structure=False)
    assert own.chunk == 3  # GS per tile: a unit is one batch
    two = [own, planner.render_plan(planner.tile_plan(Region(500, -60, 64, 64), 32), 3, shared_structure=False)]
    forwards = list(batches(two))
    flat = [(k, t.i, t.j) for part in forwards for k, t in part]
    assert flat == [(k, t.i, t.j) for k, p in enumerate(two) for t in p.tiles]
    assert [len(part) for part in forwards[:-1]] == [3] * (len(forwards) - 1)
    with pytest.raises(Exception, match="batch size"):
        RenderPlan(plan.tiles, 0, 1)


def test_every_runner_runs_the_plan_it_is_given(tiny_model, tmp_path):
    """The one-process writer computes exactly the plan's units (none re-planned underneath)."""
    from infinitygan.render import RenderOptions, SeedSource, render_to_file

    region = tiny_model.region(200, 120, -37, -50)
    options = RenderOptions(tile=32, batch=2, device="cpu")
    synth = options.synthesizer(tiny_model)
    plan = synth.planner.file_plan(region, tmp_path / "a.tif", options.tile, options.batch)
    done = [t for t, _ in synth.tiles(tiny_model.canvas(3), plan)]
    assert [(t.i, t.j) for t in done] == [(t.i, t.j) for t in plan.tiles]
    render_to_file(tiny_model, tmp_path / "a.npy", SeedSource(3), region, options)
    ref = synth.render(tiny_model.canvas(3), region, plan=plan)
    assert np.array_equal(np.load(tmp_path / "a.npy"), ref)
    assert np.array_equal(tiny_model.generate(3, 200, 120, -37, -50, options=options), ref)
