"""Distributed synthesis: 2 gloo processes on CPU (torchrun) write byte-identical files to one
process, share the work, and a failing rank fails the run in one line with no file left."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infinitygan.parallel.tiles import owner
from infinitygan.io.images import png_tile_height

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

ARGS = ["--seed", "3", "--width", "200", "--height", "120", "--tile", "32", "--x", "-37", "--y", "-50"]

API_SCRIPT = """
import json, sys
import torch.distributed as dist
from infinitygan.api import load_model
from infinitygan.parallel.tiles import render_to_file_distributed
from infinitygan.render import RenderOptions

dist.init_process_group("gloo")
model = load_model(sys.argv[1])
synth, canvas = model.synthesizer("cpu"), model.canvas(3)
region = model.region(200, 120, -37, -50)
options = RenderOptions(tile=32, device="cpu")
done = []
for ext in ("npy", "tif"):
    path = f"{sys.argv[2]}/dist.{ext}"
    plan = synth.planner.file_plan(region, path, options.tile, options.batch)
    done.append(render_to_file_distributed(synth, path, canvas, plan, options))
with open(f"{sys.argv[2]}/result-{dist.get_rank()}.json", "w") as f:  # a file each: ranks' prints can interleave
    json.dump(done, f)
dist.destroy_process_group()
"""


def torchrun(args: list[str], tmp_path: Path, extra_path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(REPO), env.get("PYTHONPATH")) if p)
    # each rank computes with this process's thread count: float results can differ in the last
    # bit between thread counts, and torchrun would otherwise give every rank one thread
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
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
    done = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result-*.json"))]
    assert len(done) == 2
    plan = model.synthesizer("cpu").planner.plan(model.region(200, 120, -37, -50), 32)
    units = list(plan.units())
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


SOURCES_SCRIPT = """
import json, sys
import torch.distributed as dist
from infinitygan.api import load_model
from infinitygan.inversion.latents_file import load_latents
from infinitygan.inversion.outpaint import LatentsSource
from infinitygan.render import RenderOptions, render_to_file
from infinitygan.scene import Point, Scene, SceneSource, StyleCentre

dist.init_process_group("gloo")
rank = dist.get_rank()
model = load_model(sys.argv[1])
lat = load_latents(sys.argv[3], model)
# every rank with its own memory budget: the ranks must still agree on rank 0's work units
options = RenderOptions(device="cpu", max_memory_mb=1.0 if rank == 1 else None)
region = model.region(200, 120, -37, -50)
render_to_file(model, f"{sys.argv[2]}/dist-cyclic.tif", SceneSource(Scene(3, cyclic=208)), region, options)
big = model.region(160, 96, lat.region.x - 56, lat.region.y - 32)
render_to_file(model, f"{sys.argv[2]}/dist-latents.npy", LatentsSource(lat, 5, big, feather=4), big, options)
# the units each rank rendered (a style-fused scene, small tiles: many units)
from infinitygan.parallel.tiles import render_to_file_distributed
scene = SceneSource(Scene(3, [StyleCentre(Point(-60, 0), seed=1), StyleCentre(Point(60, 0), seed=2)]))
options = RenderOptions(device="cpu", tile=32)
synth = options.synthesizer(model)
path = f"{sys.argv[2]}/dist-style.tif"
plan = synth.planner.file_plan(region, path, options.tile, options.batch)
done = render_to_file_distributed(synth, path, scene.canvas(synth), plan, options)
with open(f"{sys.argv[2]}/result-{dist.get_rank()}.json", "w") as f:  # a file each: ranks' prints can interleave
    json.dump(done, f)
dist.destroy_process_group()
"""


def _latents_file(model_file, tmp_path) -> Path:
    import numpy as np
    from PIL import Image

    from infinitygan.api import load_model
    from infinitygan.cli import main
    from infinitygan.io.images import to_uint8

    model = load_model(model_file)
    region = model.region(48, 32)
    Image.fromarray(to_uint8(np.tanh(model.generate(4, 48, 32, region.x, region.y)))).save(tmp_path / "photo.png")
    out = tmp_path / "photo.safetensors"
    assert main(["invert", str(tmp_path / "photo.png"), "--model", str(model_file), "--steps", "2",
                 "--w-samples", "200", "--quiet", "--out", str(out)]) == 0
    return out


def test_scenes_and_latents_are_split_like_seeds(tiny_model_file, tmp_path):
    """A cyclic scene and inverted latents (W+ override, paste-back) under two ranks whose memory
    budgets differ: the files equal one process's (rank 0's plan is everyone's)."""
    from infinitygan.api import load_model
    from infinitygan.inversion.latents_file import load_latents
    from infinitygan.inversion.outpaint import outpaint_to_file
    from infinitygan.scene import Scene, render_to_file

    model = load_model(tiny_model_file)
    lat_path = _latents_file(tiny_model_file, tmp_path)
    lat = load_latents(lat_path, model)
    render_to_file(model, tmp_path / "one-cyclic.tif", Scene(3, cyclic=208), 200, 120, -37, -50, device="cpu")
    big = model.region(160, 96, lat.region.x - 56, lat.region.y - 32)
    outpaint_to_file(tmp_path / "one-latents.npy", model, lat, 5, big, feather=4, device="cpu")
    script = tmp_path / "sources.py"
    script.write_text(SOURCES_SCRIPT)
    r = torchrun([str(script), str(tiny_model_file), str(tmp_path), str(lat_path)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("cyclic.tif", "latents.npy"):
        assert (tmp_path / f"dist-{name}").read_bytes() == (tmp_path / f"one-{name}").read_bytes(), name
    # each rank rendered about half of the scene's units (round robin), every tile once
    done = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result-*.json"))]
    assert sorted(d["rank"] for d in done) == [0, 1]
    plan = model.synthesizer("cpu").planner.plan(model.region(200, 120, -37, -50), 32)
    units = list(plan.units())
    assert len(units) >= 4 and sum(d["units"] for d in done) == len(units)
    assert sum(d["tiles"] for d in done) == len(plan) and abs(done[0]["units"] - done[1]["units"]) <= 1


REPORT_UNITS = """
import json
import os
import infinitygan.parallel.tiles as t

_render = t.render_to_file_distributed


def render(*a, **k):
    done = _render(*a, **k)
    os.write(1, ("UNITS " + json.dumps(done) + chr(10)).encode())  # one write: the ranks share stdout
    return done


t.render_to_file_distributed = render
"""


@pytest.mark.parametrize("canvas", ["style", "cyclic", "scene", "latents"])
def test_cli_canvases_under_torchrun(tiny_model_file, tmp_path, canvas):
    """`generate` under torchrun with --style, --cyclic, a scene file or --latents: each rank
    renders about half of the units (counted), the file is the bytes of one process, and one
    "wrote" line is printed (scenes and latents used to be rendered whole by every rank)."""
    from infinitygan.cli import main

    extra = {"style": ["--style", "1@-60,0", "--style", "2@60,0"], "cyclic": ["--cyclic", "208"]}.get(canvas)
    if canvas == "scene":
        (tmp_path / "s.yaml").write_text("seed: 3\ncentres:\n  - {seed: 4, point: [-50, 0]}\n  - {seed: 6, box: [40, -40, 64, 64]}\n")
        extra = ["--scene", str(tmp_path / "s.yaml")]
    if canvas == "latents":
        extra = ["--latents", str(_latents_file(tiny_model_file, tmp_path))]
    args = ["generate", "--model", str(tiny_model_file), *ARGS, *extra, "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one.tif"), "--quiet"]) == 0
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(REPORT_UNITS)
    r = torchrun(["-m", "infinitygan", *args, "--out", "dist.tif"], tmp_path, extra_path=str(inject))
    assert r.returncode == 0, r.stderr[-3000:]
    wrote = [line for line in r.stderr.splitlines() if line.startswith("wrote")]
    assert len(wrote) == 1 and "2 ranks" in wrote[0], r.stderr[-3000:]
    assert (tmp_path / "dist.tif").read_bytes() == (tmp_path / "one.tif").read_bytes()
    # the two ranks write to one pipe: find each report wherever it lands (a line can hold two)
    done = [json.loads(m) for m in re.findall(r"UNITS (\{[^{}]*\})", r.stdout)]
    assert sorted(d["rank"] for d in done) == [0, 1]
    units = [d["units"] for d in done]
    assert min(units) >= 1 and abs(units[0] - units[1]) <= 1, done


def test_inversion_refuses_torchrun_in_one_line(tiny_model_file, tmp_path, monkeypatch, capsys):
    from infinitygan.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    (tmp_path / "p.png").write_bytes(b"")
    assert main(["invert", str(tmp_path / "p.png"), "--model", str(tiny_model_file), "--out",
                 str(tmp_path / "l.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs in one process" in err[0]


#: (injected) each rank writes its intra-op thread count to $INFINITYGAN_TEST_THREADS/rank<R> at exit
REPORT_THREADS = """
import atexit, os, sys
def _report():
    if os.environ.get("RANK") is not None and "torch" in sys.modules:
        path = os.path.join(os.environ["INFINITYGAN_TEST_THREADS"], "rank" + os.environ["RANK"])
        with open(path, "w") as f:
            f.write(str(sys.modules["torch"].get_num_threads()))
atexit.register(_report)
"""


def test_nproc_launches_ranks_with_one_line_and_our_exit_codes(tiny_model_file, tmp_path):
    """`generate --nproc 2`: torch's elastic launch under our own exit codes: the bytes of one
    process and one "wrote" line, each rank on its share of the cores (OMP_NUM_THREADS unset:
    max(1, cores // 2) threads, not every core); a failing rank gives one line and status 2, no
    launcher report."""
    from infinitygan.cli import main
    from infinitygan.parallel.launch import available_cores

    assert main(["generate", "--model", str(tiny_model_file), *ARGS, "--out", str(tmp_path / "one.tif"), "--quiet",
                 "--device", "cpu"]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    env.pop("OMP_NUM_THREADS", None)
    report = tmp_path / "report"
    (report / "threads").mkdir(parents=True)
    (report / "sitecustomize.py").write_text(REPORT_THREADS)
    cmd = [sys.executable, "-m", "infinitygan", "generate", "--model", str(tiny_model_file), *ARGS, "--device", "cpu",
           "--nproc", "2"]
    r = subprocess.run(cmd + ["--out", "dist.tif"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=dict(env, INFINITYGAN_TEST_THREADS=str(report / "threads"),
                                PYTHONPATH=os.pathsep.join((str(report), env["PYTHONPATH"]))))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "dist.tif").read_bytes() == (tmp_path / "one.tif").read_bytes()
    lines = [line for line in r.stderr.splitlines() if line.strip() and "synthesis" not in line]
    assert len(lines) == 1 and lines[0].startswith("wrote") and "2 ranks" in lines[0], r.stderr[-3000:]
    share = str(max(1, available_cores() // 2))
    assert {p.name: p.read_text() for p in (report / "threads").iterdir()} == {"rank0": share, "rank1": share}

    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAIL_RANK_1)
    env["PYTHONPATH"] = os.pathsep.join((str(inject), env["PYTHONPATH"]))
    r = subprocess.run(cmd + ["--out", "big.tif", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["infinitygan: error: rank 1 failed: RuntimeError: injected failure on "
                                             "this rank"], r.stderr[-3000:]
    assert not (tmp_path / "big.tif").exists() and not list(tmp_path.glob(".big.tif*"))


def test_nproc_gives_each_rank_its_share_of_the_cores_unless_the_user_chose(monkeypatch):
    """The ranks' environment: OMP_NUM_THREADS = max(1, cores // N), marked as the launcher's
    (training still leaves cores to its loader workers); the user's OMP_NUM_THREADS is kept;
    the launching process's own environment is as it was afterwards."""
    import torch.distributed.launcher.api as api

    from infinitygan.parallel import launch
    from infinitygan.training.options import cpu_threads

    monkeypatch.setattr(launch, "available_cores", lambda: 8)
    assert launch.rank_environment(3, {}) == {"OMP_NUM_THREADS": "2", launch.THREADS_FROM_NPROC: "1"}
    assert launch.rank_environment(16, {}) == {"OMP_NUM_THREADS": "1", launch.THREADS_FROM_NPROC: "1"}
    assert launch.rank_environment(2, {"OMP_NUM_THREADS": "3"}) == {}

    seen = []

    def fake_elastic_launch(config, entrypoint):
        return lambda *args: seen.append({k: os.environ.get(k) for k in ("OMP_NUM_THREADS", launch.THREADS_FROM_NPROC)})

    monkeypatch.setattr(api, "elastic_launch", fake_elastic_launch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch.launch(4, ["generate"]) == 0
    assert seen == [{"OMP_NUM_THREADS": "2", launch.THREADS_FROM_NPROC: "1"}]
    assert "OMP_NUM_THREADS" not in os.environ and launch.THREADS_FROM_NPROC not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.launch(4, ["generate"]) == 0
    assert seen[1] == {"OMP_NUM_THREADS": "3", launch.THREADS_FROM_NPROC: None}

    # a training rank under --nproc 2 with 2 loader workers: 8 // 2 - 2 threads when the launcher
    # set OMP_NUM_THREADS (4); the user's own OMP_NUM_THREADS wins
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert cpu_threads(2, 1) == torch.get_num_threads()
    monkeypatch.setenv(launch.THREADS_FROM_NPROC, "1")
    assert cpu_threads(2, 1) == 2
