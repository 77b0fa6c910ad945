"""The render pipeline: one checked request (RenderOptions), canvas sources, one writer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infinitygan.cli import main
from infinitygan.errors import UserError
from infinitygan.render import RenderOptions, SeedSource, render_to_file


@pytest.mark.parametrize("bad", [
    dict(tile=0), dict(tile=10 ** 30), dict(tile=2.5), dict(batch=0), dict(batch=10 ** 9),
    dict(max_memory_mb=math.nan), dict(max_memory_mb=math.inf), dict(max_memory_mb=-1.0), dict(max_memory_mb=0),
    dict(max_memory_mb="lots"), dict(dtype="float64"), dict(device="tpu"), dict(device="cuda:x"),
])
def test_render_options_refuse_bad_values(bad):
    with pytest.raises(UserError):
        RenderOptions(**bad)


def test_render_options_merge():
    base = RenderOptions(tile=64, device="cpu")
    merged = RenderOptions.of(base, batch=2, tile=None)  # None keeps
    assert (merged.tile, merged.batch, merged.device) == (64, 2, "cpu")
    with pytest.raises(TypeError):
        RenderOptions.of(base, tiles=3)


@pytest.mark.parametrize("args", [
    ["--max-memory", "inf"], ["--max-memory", "nan"], ["--tile", "99999999999999999999999"], ["--batch", "0"],
    ["--dtype", "float64"],
])
def test_generate_refuses_bad_render_options_in_one_line(tmp_path, capsys, tiny_model_file, args):
    rc = main(["generate", "--model", str(tiny_model_file), "--width", "32", "--height", "32", *args,
               "--out", str(tmp_path / "x.png"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("infinitygan: error:"), err
    assert not list(tmp_path.iterdir())


def test_the_output_is_checked_once_and_the_file_equals_the_api(tmp_path, tiny_model, tiny_model_file, monkeypatch):
    import infinitygan.render.pipeline as pipeline

    calls = []
    real = pipeline.check_output
    monkeypatch.setattr(pipeline, "check_output", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert main(["generate", "--model", str(tiny_model_file), "--seed", "2", "--width", "80", "--height", "48",
                 "--x", "-40", "--y", "-24", "--tile", "32", "--out", str(tmp_path / "cli.npy"), "--quiet"]) == 0
    assert len(calls) == 1
    region = tiny_model.region(80, 48, -40, -24)
    render_to_file(tiny_model, tmp_path / "api.npy", SeedSource(2), region, RenderOptions(tile=48))
    a, b = np.load(tmp_path / "cli.npy"), np.load(tmp_path / "api.npy")
    assert a.shape == (48, 80, 3)
    assert np.allclose(a, b, atol=1e-5)  # another tile size: the same pixels up to float rounding
    assert np.array_equal(a, tiny_model.generate(2, 80, 48, -40, -24, tile=32))


def test_latents_honour_force_and_the_memory_budget(tmp_path, tiny_model, tiny_model_file, monkeypatch):
    """`generate --latents F --max-memory N --force` passes both on (they used to be dropped)."""
    from PIL import Image

    import infinitygan.synthesis as synthesis
    from infinitygan.io.images import to_uint8

    region = tiny_model.region(48, 32)
    Image.fromarray(to_uint8(np.tanh(tiny_model.generate(4, 48, 32, region.x, region.y)))).save(tmp_path / "p.png")
    lat = tmp_path / "p.safetensors"
    assert main(["invert", str(tmp_path / "p.png"), "--model", str(tiny_model_file), "--steps", "2",
                 "--w-samples", "200", "--quiet", "--out", str(lat)]) == 0
    budgets, forced = [], []
    init = synthesis.Synthesizer.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        budgets.append(self.planner.max_memory_mb)

    monkeypatch.setattr(synthesis.Synthesizer, "__init__", spy)
    import infinitygan.render.pipeline as pipeline

    real = pipeline.write_tiles
    monkeypatch.setattr(pipeline, "write_tiles", lambda *a, **k: forced.append(a[-1]) or real(*a, **k))
    assert main(["generate", "--model", str(tiny_model_file), "--latents", str(lat), "--max-memory", "3",
                 "--force", "--out", str(tmp_path / "o.png"), "--quiet"]) == 0
    assert budgets == [3.0] and forced == [True]


@pytest.mark.parametrize("command", [["pan", "--width", "64", "--height", "64", "--frames", "2", "--out", "v.mp4"],
                                     ["serve", "--port", "8765"]])
def test_commands_that_tile_refuse_the_zero_padded_baseline(tmp_path, capsys, monkeypatch, command):
    """`pan` strips and `serve` map tiles would disagree with a one-shot render of the padded
    StyleGAN2+NCI baseline: refused in one line before any work."""
    pytest.importorskip("av" if command[0] == "pan" else "uvicorn")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--preset", "stylegan2-nci", "--out", "nci.safetensors"]) == 0
    capsys.readouterr()
    rc = main([command[0], "--model", "nci.safetensors", *command[1:], "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "padding-free generator" in err[0], err
    assert not (tmp_path / "v.mp4").exists()


def test_parsing_render_options_has_no_side_effects(tmp_path, capsys, tiny_model_file, monkeypatch):
    """`--nproc` is the dispatch's: a bad option is refused once, by this process, before any rank
    starts; a good command line is handed to the launcher as given (no module global)."""
    import infinitygan.parallel.launch as launch
    from infinitygan.render.cli_options import options_from

    kw = {"tile": 32, "batch": None, "device": "cpu", "dtype": "float32", "max_memory": None, "force": False,
          "quiet": True, "nproc": 2, "other": 1}
    options, quiet = options_from(kw)
    assert options.tile == 32 and quiet and kw == {"nproc": 2, "other": 1}  # the rest is the command's
    launched = []
    monkeypatch.setattr(launch, "launch", lambda nproc, argv: launched.append((nproc, argv)) or 0)
    args = ["generate", "--model", str(tiny_model_file), "--width", "32", "--height", "32", "--nproc", "2",
            "--out", str(tmp_path / "x.png"), "--quiet"]
    assert main([*args, "--tile", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tile" in err[0] and launched == [], err
    assert main(args) == 0
    assert launched == [(2, args)] and not list(tmp_path.iterdir())  # the ranks would render; none ran here
