"""benchmarks/gpu_train.py, the one-command GPU training check, run on the CPU (slow: a real run)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infinitygan.io.checkpoint import read_metadata

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"


@pytest.mark.slow
def test_budget_stops_the_run_with_a_checkpoint_that_forks(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--seconds", "25", "--device", "cpu", "--batch", "2",
           "--checkpoint-every", "100000"]
    subprocess.run(cmd, check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    ckpt = out / summary["checkpoint"]
    # no periodic checkpoint (nor sample grid) was due: the one checkpoint is SIGTERM's, at the iteration reached
    assert sorted(p.name for p in out.iterdir()) == sorted([ckpt.name, "config.yaml", "summary.json"])
    assert summary["exit_code"] != 0 and summary["iteration"] == int(read_metadata(ckpt)["iteration"]) >= 1
    assert summary["images_this_run"] == 2 * summary["iteration"]

    out2 = tmp_path / "out2"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out2), "--seconds", "20", "--device", "cpu",
                    "--fork", str(ckpt), "--set", "lr=0.001", "--checkpoint-every", "100000"], check=True,
                   capture_output=True)
    forked = json.loads((out2 / "summary.json").read_text())
    assert forked["iteration"] == summary["iteration"] + forked["iterations_this_run"]
    assert forked["batch"] == 2


def test_bad_budget_and_missing_fork_stop_with_one_line(tmp_path):
    for extra in (["--seconds", "0"], ["--seconds", "5", "--fork", str(tmp_path / "none.safetensors")]):
        res = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "o"), "--device", "cpu", *extra],
                             capture_output=True, text=True)
        assert res.returncode != 0 and res.stderr.count("\n") == 1 and "gpu_train.py:" in res.stderr
