"""Distributed synthesis: 2 gloo processes on CPU (torchrun) write byte-identical files to one
process, share the work, and a failing rank fails the run in one line with no file left."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from infinitygan.distributed import owner
from infinitygan.io.images import png_tile_height

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

ARGS = ["--seed", "3", "--width", "200", "--height", "120", "--tile", "32", "--x", "-37", "--y", "-50"]

API_SCRIPT = """
import json, sys
import torch.distributed as dist
from infinitygan.api import load_model
from infinitygan.distributed import render_to_file_distributed

dist.init_process_group("gloo")
model = load_model(sys.argv[1])
synth, canvas = model.synthesizer("cpu"), model.canvas(3)
region = model.region(200, 120, -37, -50)
done = [render_to_file_distributed(f"{sys.argv[2]}/dist.{ext}", synth, canvas, region, tile=32) for ext in ("npy", "tif")]
print("RESULT " + json.dumps(done), flush=True)
dist.destroy_process_group()
"""


def torchrun(args: list[str], tmp_path: Path, extra_path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(REPO), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_two_ranks_write_the_bytes_of_one_process(tiny_model_file, tmp_path):
    from infinitygan.api import load_model

    model = load_model(tiny_model_file)
    for ext in ("npy", "tif"):
        model.generate_to_file(tmp_path / f"one.{ext}", 3, 200, 120, -37, -50, tile=32, device="cpu")
    script = tmp_path / "run.py"
    script.write_text(API_SCRIPT)
    r = torchrun([str(script), str(tiny_model_file), str(tmp_path)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for ext in ("npy", "tif"):
        assert (tmp_path / f"dist.{ext}").read_bytes() == (tmp_path / f"one.{ext}").read_bytes(), ext
    # the work was divided: each rank rendered its own units (round robin), together every tile once
    done = [json.loads(line[7:]) for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(done) == 2
    synth = model.synthesizer("cpu")
    plan = synth.plan(model.region(200, 120, -37, -50), 32)
    units = list(synth.groups(plan, synth.batch_size(None)))
    assert len(units) >= 4
    for per_rank in done:
        for d in per_rank:
            r_ = d["rank"]
            mine = [u for g, u in enumerate(units) if owner(g, 2) == r_]
            assert d["world"] == 2 and d["units"] == len(mine)
            assert d["tiles"] == sum(j1 - j0 for _, j0, j1 in mine)
    assert sum(d[0]["tiles"] for d in done) == len(plan)
    assert abs(done[0][0]["units"] - done[1][0]["units"]) <= 1


def test_cli_under_torchrun_png(tiny_model_file, tmp_path):
    from infinitygan.cli import main

    assert png_tile_height(200) >= 120  # one row of tiles: the PNG path has its own plan height
    assert main(["generate", "--model", str(tiny_model_file), *ARGS, "--out", str(tmp_path / "one.png"),
                 "--quiet", "--device", "cpu"]) == 0
    r = torchrun(["-m", "infinitygan", "generate", "--model", str(tiny_model_file), *ARGS, "--device", "cpu",
                  "--out", "dist.png"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 ranks" in r.stderr
    assert (tmp_path / "dist.png").read_bytes() == (tmp_path / "one.png").read_bytes()


FAIL_RANK_1 = """
import os
if os.environ.get("RANK") == "1":
    import infinitygan.synthesis as s

    _tiles = s.Synthesizer.tiles

    def tiles(self, *a, **k):
        it = _tiles(self, *a, **k)
        yield next(it)
        raise RuntimeError("injected failure on this rank")

    s.Synthesizer.tiles = tiles
"""


def test_a_failing_rank_fails_the_run_in_one_line(tiny_model_file, tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAIL_RANK_1)
    r = torchrun(["-m", "infinitygan", "generate", "--model", str(tiny_model_file), *ARGS, "--device", "cpu",
                  "--out", "big.tif", "--quiet"], tmp_path, extra_path=str(inject))
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if line.startswith("infinitygan:")]
    assert ours == ["infinitygan: error: rank 1 failed: RuntimeError: injected failure on this rank"], r.stderr[-3000:]
    assert "Traceback" not in r.stderr.split("infinitygan: error")[0]
    assert not (tmp_path / "big.tif").exists()
    assert not list(tmp_path.glob(".big.tif*"))  # no temporary file left behind
