"""Training's command line (training.cli): the smoke test through generate, info and eval, bad input
in one line, torchrun, and the literal 20-iteration run (slow). Helpers and the micro config:
test_training."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from test_training import REPO, ckpt_meta, ckpts, micro, one_thread, run  # noqa: F401 (fixtures)


def test_torchrun_two_processes_cli(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "infinitygan", "train",
           "--preset", "tiny", "--data", "procedural", "--iterations", "10", "--batch", "4", "--workers", "0",
           "--device", "cpu", "--out", str(out), "--quiet", "--sample-every", "10"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    meta = ckpt_meta(out / "checkpoints" / "ckpt-00000010.safetensors")
    assert meta["world_size"] == "2" and meta["images_seen"] == "40"
    assert (out / "samples" / "iter-00000010.png").is_file()


# ------------------------------------------------------------------------------------ CLI
def test_cli_smoke_tiny_generate_info_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--preset", "tiny", "--batch", 2, "--iterations", 2, "--out", out,
                     "--workers", 2, "--device", "cpu", "--seed", 1)
    assert rc == 0, err
    assert "iteration 2, 4 images seen" in err
    assert (out / "samples" / "iter-00000002.png").is_file()
    rc, outp, err = run(capsys, "info", out)
    assert rc == 0, err
    info = json.loads(outp)
    assert info["iteration"] == 2 and info["images_seen"] == 4 and info["kind"] == "training-checkpoint"
    assert info["parameters"]["generator"] > 0 and info["parameters"]["discriminator"] > 0
    img = tmp_path / "pano.png"
    rc, _, err = run(capsys, "generate", "--model", out, "--seed", 2, "--width", 160, "--height", 48,
                     "--out", img, "--quiet")
    assert rc == 0, err
    assert Image.open(img).size == (160, 48)
    # resume with the run's own config (no --preset): continues to the new total
    rc, _, err = run(capsys, "train", "--resume", "--iterations", 3, "--out", out, "--workers", 0,
                     "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert ckpts(out)[-1] == "ckpt-00000003.safetensors"
    assert ckpt_meta(out / "checkpoints" / "ckpt-00000003.safetensors")["seed"] == "1"


@pytest.fixture
def trained_run(tmp_path, micro, capsys):
    out = tmp_path / "done"
    assert run(capsys, "train", "--config", micro, "--iterations", 1, "--out", out, "--workers", 0,
               "--device", "cpu", "--quiet")[0] == 0
    return out


def bad_input_cases(tmp_path, micro, trained_run):
    f = tmp_path / "a_file"
    f.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    base = ["train", "--config", micro, "--iterations", 2, "--workers", 0, "--device", "cpu", "--quiet"]
    return {
        "missing data folder": (base + ["--data", tmp_path / "nope", "--out", tmp_path / "r1"], "data folder not found"),
        "empty data folder": (base + ["--data", empty, "--out", tmp_path / "r2"], "no images"),
        "unknown preset": (["train", "--preset", "huge", "--out", tmp_path / "r3"], "unknown preset"),
        "preset and config": (["train", "--preset", "tiny", "--config", micro, "--out", tmp_path / "r3"],
                              "either --preset or --config"),
        "unwritable run dir": (base + ["--out", f / "run"], "run directory"),
        "run dir is a file": (base + ["--out", f], "not a directory"),
        "resume without checkpoint": (base + ["--resume", "--out", tmp_path / "r4"], "nothing to resume"),
        "existing run without --resume": (base + ["--out", trained_run], "use --resume"),
        "resume other preset": (["train", "--preset", "tiny", "--resume", "--out", trained_run], "config differs"),
        "resume changed field": (base + ["--resume", "--batch", 2, "--out", trained_run], "training.batch_size"),
        "bad iterations": (base + ["--iterations", 0, "--out", tmp_path / "r8"], "training.iterations must be in 1.."),
        "bad interval": (base + ["--log-every", 0, "--out", tmp_path / "r9"], "--log-every must be >= 1"),
        "resume other seed": (base + ["--resume", "--seed", 9, "--out", trained_run], "--seed"),
        "bad batch": (base + ["--batch", 0, "--out", tmp_path / "r5"], "training.batch_size must be in 1.."),
        "bad amp": (base + ["--amp", "fp8", "--out", tmp_path / "r6"], "--amp"),
        "bad device": (base + ["--device", "tpu", "--out", tmp_path / "r7"], "device"),
        "eval bad scale": (["eval", "--model", trained_run, "--scale", 0], "--scale"),
        "eval missing model": (["eval", "--model", tmp_path / "nope.safetensors"], "not found"),
        "prepare missing folder": (["prepare", tmp_path / "nope", "--out", tmp_path / "x.lmdb"], "not found"),
    }


def test_bad_inputs_exit_2_with_one_line(tmp_path, micro, trained_run, capsys):
    for name, (args, needle) in bad_input_cases(tmp_path, micro, trained_run).items():
        rc, out, err = run(capsys, *args)
        lines = err.strip().splitlines()
        assert rc == 2, (name, rc, err)
        assert len(lines) == 1 and lines[0].startswith("infinitygan: error: "), (name, err)
        assert needle in lines[0], (name, lines[0])
    # nothing was created for the failed runs, and the trained run is untouched
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r4" / "checkpoints").exists()
    assert ckpts(trained_run) == ["ckpt-00000001.safetensors"]


# ----------------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_tiny_20_iterations_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--batch", 4, "--out", out, "--workers", 2, "--device", "cpu", "--quiet"]
    rc, _, err = run(capsys, *args, "--iterations", 20)
    assert rc == 0, err
    rc, _, err = run(capsys, *args, "--iterations", 22, "--resume")
    assert rc == 0, err
    meta = ckpt_meta(out / "checkpoints" / "ckpt-00000022.safetensors")
    assert meta["iteration"] == "22" and meta["images_seen"] == "88"
    assert (out / "samples" / "iter-00000022.png").is_file()
