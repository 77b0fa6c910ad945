"""``train --fork FILE --set KEY=VALUE``: a new run from another run's checkpoint (infinitygan.training.fork).

Equivalence: a fork with no change makes the iterations the source run would have made (forking
is resuming into another folder); a fork with a change records it in its config.yaml and its
checkpoints' ``init_from``, and leaves the source run as it was.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from infinitygan.config import load_config
from infinitygan.training.fork import parse_settings, with_settings
from test_training import (assert_same_checkpoints, ckpt_meta, ckpts, micro, one_thread,  # noqa: F401 (fixtures)
                           run, whole_and_half)

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "infinitygan" / "assets" / "landscapes-tiny.safetensors"
CLI = ["--workers", 0, "--device", "cpu", "--quiet", "--deterministic", "--checkpoint-every", 100,
       "--sample-every", 100]


@pytest.fixture
def source(tmp_path, micro):
    """A micro run made in one go to 7, and its checkpoint 4 (the same run stopped there)."""
    whole, half = whole_and_half(load_config(micro), tmp_path)
    return whole, half / "checkpoints" / "ckpt-00000004.safetensors"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fork_without_changes_equals_the_uninterrupted_run(tmp_path, source, capsys):
    whole, ckpt = source
    out = tmp_path / "fork"
    rc, _, err = run(capsys, "train", "--fork", ckpt, "--out", out, "--iterations", 7, *CLI)
    assert rc == 0, err
    assert_same_checkpoints(whole / "checkpoints" / "ckpt-00000007.safetensors",
                            out / "checkpoints" / "ckpt-00000007.safetensors")
    meta = ckpt_meta(out / "checkpoints" / "ckpt-00000007.safetensors")
    assert meta["seed"] == "3" and meta["init_from"] == f"{ckpt}@4"
    assert yaml.safe_load((out / "config.yaml").read_text()) == yaml.safe_load((whole / "config.yaml").read_text())


def test_fork_with_a_changed_constant(tmp_path, source, capsys):
    whole, ckpt = source
    before = _digest(ckpt)
    out = tmp_path / "fork"
    rc, _, err = run(capsys, "train", "--fork", ckpt, "--out", out, "--iterations", 7,
                     "--set", "lr=0.0005", "--set", "training.r1_gamma=0.5", *CLI)
    assert rc == 0, err
    tc = yaml.safe_load((out / "config.yaml").read_text())["training"]
    assert (tc["lr"], tc["r1_gamma"], tc["iterations"]) == (0.0005, 0.5, 7)
    # the source run is only read; its config keeps the old constant
    assert _digest(ckpt) == before and ckpts(ckpt.parent.parent) == ["ckpt-00000004.safetensors"]
    assert yaml.safe_load((ckpt.parent.parent / "config.yaml").read_text())["training"]["lr"] != 0.0005
    A = load_file(str(whole / "checkpoints" / "ckpt-00000007.safetensors"))
    B = load_file(str(out / "checkpoints" / "ckpt-00000007.safetensors"))
    assert any(not torch.equal(A[k], B[k]) for k in A if k.startswith("g_ema."))
    # the fork is an ordinary run: it resumes with its own constants and keeps its origin ...
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--iterations", 9, *CLI)
    assert rc == 0, err
    assert ckpt_meta(out / "checkpoints" / "ckpt-00000009.safetensors")["init_from"] == f"{ckpt}@4"
    # ... and refuses another change on resume, pointing at --fork
    rc, _, err = run(capsys, "train", "--out", out, "--resume", "--iterations", 11, "--set", "lr=0.002", *CLI)
    assert rc == 2 and "config differs" in err and "training.lr" in err


def test_bad_forks_and_settings_exit_2_with_one_line(tmp_path, source, micro, capsys):
    _, ckpt = source
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    base = ["train", "--out", tmp_path / "new", "--iterations", 9, "--workers", 0, "--device", "cpu", "--quiet"]
    cases = {
        "missing file": (["--fork", tmp_path / "nope.safetensors"], "no such file"),
        "not safetensors": (["--fork", micro], "expected a training checkpoint"),
        "junk": (["--fork", junk], "junk.safetensors"),
        "generator file": (["--fork", BUNDLED], "a generator file, not a training checkpoint"),
        "with resume": (["--fork", ckpt, "--resume"], "cannot be combined with --resume"),
        "with preset": (["--fork", ckpt, "--preset", "tiny"], "cannot be combined with --preset/--config"),
        "too few iterations": (["--fork", ckpt, "--iterations", 4], "--iterations must be larger"),
        "unknown key": (["--fork", ckpt, "--set", "lr_g=1"], "not a training setting"),
        "no value": (["--fork", ckpt, "--set", "lr"], "expected KEY=VALUE"),
        "not a number": (["--fork", ckpt, "--set", "lr=fast"], "expected a number"),
        "out of range": (["--fork", ckpt, "--set", "lr=-1"], "training.lr must be in"),
        "not whole": (["--fork", ckpt, "--set", "r1_every=2.5"], "expected a whole number"),
        "own option": (["--fork", ckpt, "--set", "iterations=20"], "use --iterations"),
        "set on a fresh run": (["--config", micro, "--set", "ema_decay=2"], "training.ema_decay must be in"),
    }
    for name, (extra, needle) in cases.items():
        rc, _, err = run(capsys, *base, *extra)
        lines = err.strip().splitlines()
        assert rc == 2, (name, rc, err)
        assert len(lines) == 1 and lines[0].startswith("infinitygan: error: "), (name, err)
        assert needle in lines[0], (name, lines[0])
    assert not (tmp_path / "new" / "checkpoints").exists()


def test_set_on_a_fresh_run_and_value_types(tmp_path, micro, capsys):
    assert parse_settings(["lr=1e-3", "pre_resize=null", "r1_every=4.0"]) == {
        "lr": 0.001, "pre_resize": None, "r1_every": 4.0}
    assert parse_settings(["lr=7"])["lr"] == 7
    cfg = with_settings(load_config(micro), parse_settings(["lr=1", "r1_every=4.0", "pre_resize=null"]))
    tc = cfg.training
    assert (tc.lr, tc.r1_every, tc.pre_resize) == (1.0, 4, None)
    assert isinstance(tc.lr, float) and isinstance(tc.r1_every, int)
    out = tmp_path / "fresh"
    rc, _, err = run(capsys, "train", "--config", micro, "--out", out, "--iterations", 1, "--set", "r1_gamma=0.25",
                     "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["r1_gamma"] == 0.25
    assert "init_from" not in ckpt_meta(out / "checkpoints" / "ckpt-00000001.safetensors")
