"""benchmarks/gpu_train.py, the one-command GPU training check, run on the CPU (slow: a real run)."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import benchmark_script
from infinitygan.io.checkpoint import read_metadata

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"


def _script():
    return benchmark_script("gpu_train")


@pytest.mark.slow
def test_returns_the_checkpoint_that_forks(tmp_path):
    """Runs bounded by --iterations (not by the clock, so a busy machine gives the same result)."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--seconds", "600", "--device", "cpu", "--batch", "2",
           "--iterations", "2", "--checkpoint-every", "100000"]
    subprocess.run(cmd, check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    ckpt = out / summary["checkpoint"]
    assert sorted(p.name for p in out.iterdir()) == sorted([ckpt.name, "config.yaml", "samples.png", "summary.json"])
    assert summary["exit_code"] == 0 and summary["iteration"] == int(read_metadata(ckpt)["iteration"]) == 2
    assert summary["images_this_run"] == 4

    out2 = tmp_path / "out2"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out2), "--seconds", "600", "--device", "cpu",
                    "--fork", str(ckpt), "--set", "lr=0.001", "--iterations", "3", "--checkpoint-every", "100000"],
                   check=True, capture_output=True)
    forked = json.loads((out2 / "summary.json").read_text())
    assert (forked["iteration"], forked["iterations_this_run"], forked["batch"]) == (3, 1, 2)


def test_the_budget_stops_the_command_with_sigterm():
    """run_for sends SIGTERM at the budget (the training loop then checkpoints: test_training)."""
    rc, wall = _script().run_for([sys.executable, "-c", "import time; time.sleep(120)"], 0.5)
    assert rc == -signal.SIGTERM and wall < 60


def test_bad_budget_and_missing_fork_stop_with_one_line(tmp_path):
    for extra in (["--seconds", "0"], ["--seconds", "5", "--fork", str(tmp_path / "none.safetensors")]):
        res = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "o"), "--device", "cpu", *extra],
                             capture_output=True, text=True)
        assert res.returncode != 0 and res.stderr.count("\n") == 1 and "gpu_train.py:" in res.stderr
