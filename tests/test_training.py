"""Training: the loop, checkpoints, resume, the NaN guard and data parallelism (training.loop,
training.state); what a step computes: test_training_phases; the data sources: test_training_data;
the command line: test_training_cli (they share this module's helpers and micro config).

Most tests use a "micro" config (same topology kinds as tiny, 2 GT stages, 17-pixel patches of
33-pixel images) so that an iteration takes tens of milliseconds on a CPU; the CLI smoke test
uses the tiny preset. Slow variants (literal 20-iteration runs, torchrun) are marked slow.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from infinitygan.cli import main
from infinitygan.config import load_config
from infinitygan.errors import UserError
from infinitygan.training import losses
from infinitygan.parallel.env import launch_local
from infinitygan.training.loop import train as train_run
from infinitygan.training.options import RunOptions

REPO = Path(__file__).resolve().parents[1]

MICRO = {
    "name": "micro",
    "generator": {"zg_dim": 16, "zl_dim": 8, "style_dim": 16, "mapping_layers": 2, "gs_layers": 2,
                  "gs_kernel": 3, "gs_channels": 8, "n_up": 2, "ts_channels": [16, 16, 8, 8], "ts_input": 8},
    "discriminator": {"channels": [8, 16, 16, 16], "mbstd_group": 2},
    "training": {"batch_size": 4, "full_size": 33, "pre_resize": None, "checkpoint_every": 2,
                 "sample_every": 3, "log_every": 1, "r1_every": 2, "pl_every": 3},
}
FAST = dict(device="cpu", workers=0, quiet=True)


def train(cfg, data, out, iterations=None, batch_size=None, seed=None, resume=False, **options):
    """``loop.train`` with the trajectory changes (iterations, batch) applied to the config."""
    changes = {k: v for k, v in (("iterations", iterations), ("batch_size", batch_size)) if v is not None}
    return train_run(cfg.with_training(**changes), data, out, seed=seed, resume=resume, options=RunOptions(**options))


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Modest CPU use (the machine is shared): one intra-op thread, also in subprocesses."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def write_cfg(path: Path, base: dict = MICRO, **training) -> Path:
    d = json.loads(json.dumps(base))
    d["training"].update(training)
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture
def micro(tmp_path) -> Path:
    return write_cfg(tmp_path / "micro.yaml")


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def ckpt_meta(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def ckpts(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("*.safetensors"))


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_keys_metadata_and_run_layout(tmp_path, micro):
    cfg = load_config(micro)
    out = tmp_path / "run"
    res = train(cfg, "procedural", out, iterations=7, seed=5, **FAST)
    assert res["iteration"] == 7 and res["images_seen"] == 28 and res["nan_skips"] == 0
    # every 2 iterations + the end, newest 3 kept
    assert ckpts(out) == ["ckpt-00000004.safetensors", "ckpt-00000006.safetensors", "ckpt-00000007.safetensors"]
    path = out / "checkpoints" / "ckpt-00000007.safetensors"
    meta = ckpt_meta(path)
    assert meta["format"] == "infinitygan-model" and meta["kind"] == "training-checkpoint"
    assert meta["iteration"] == "7" and meta["images_seen"] == "28" and meta["seed"] == "5"
    assert meta["world_size"] == "1"
    progress = json.loads(meta["progress"])
    assert progress["nan_skips"] == 0 and "loss/d_total" in progress["last"]
    state = load_file(str(path))
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {"g", "d", "g_ema", "g_optim", "d_optim", "pl_mean"}
    from infinitygan.api import build_generator
    from infinitygan.discriminator import Discriminator

    G, D = build_generator(cfg), Discriminator(cfg.discriminator, cfg.generator.patch_size)
    assert {k[2:] for k in state if k.startswith("g.")} == set(G.state_dict())
    assert {k[6:] for k in state if k.startswith("g_ema.")} == set(G.state_dict())
    assert {k[2:] for k in state if k.startswith("d.")} == set(D.state_dict())
    n_g = len(list(G.parameters()))
    for i in range(n_g):
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert f"g_optim.{i}.{k}" in state
    assert state["g_optim.0.step"].item() == 7 + 3  # 7 G steps + path-length steps at t = 0, 3, 6
    assert state["d_optim.0.step"].item() == 7 + 4  # 7 D steps + R1 at t = 0, 2, 4, 6
    assert state["pl_mean"].item() > 0
    # G_ema differs from G (it is an average), and all tensors are finite
    assert any(not torch.equal(state[f"g.{k}"], state[f"g_ema.{k}"]) for k in G.state_dict())
    assert all(torch.isfinite(v).all() for v in state.values())
    # the run directory
    assert yaml.safe_load((out / "config.yaml").read_text()) == cfg.to_dict() | {
        "training": cfg.to_dict()["training"] | {"iterations": 7}}
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["iter-00000003.png", "iter-00000006.png",
                                                                    "iter-00000007.png"]
    P = cfg.generator.patch_size
    assert Image.open(out / "samples" / "iter-00000007.png").size == (4 * (4 * P + 4) - 4, 2 * P + 4)
    assert list((out / "logs").glob("events.out.tfevents.*"))
    # api / info / generate read the run directory
    from infinitygan.api import load_model

    m = load_model(out)
    ema = {k[6:]: v for k, v in state.items() if k.startswith("g_ema.")}
    assert all(torch.equal(m.generator.state_dict()[k], v) for k, v in ema.items())


def test_keep_every_keeps_the_learning_curves_checkpoints(tmp_path, micro):
    """--keep-every N: the checkpoints at multiples of N stay besides the newest 3 (rotated ones go)."""
    out = tmp_path / "run"
    train(load_config(micro), "procedural", out, iterations=11, seed=5, checkpoint_every=1, keep_every=4, **FAST)
    assert ckpts(out) == [f"ckpt-{i:08d}.safetensors" for i in (4, 8, 9, 10, 11)]
    with pytest.raises(UserError, match="--keep-every"):
        RunOptions(keep_every=0)


def test_tensorboard_scalars(tmp_path, micro):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(load_config(micro), "procedural", out, iterations=3, samples=False, **FAST)
    acc = EventAccumulator(str(out / "logs"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for t in ("loss/d_adv", "loss/g_adv", "loss/diversity", "loss/d_aux_real", "loss/d_aux_fake", "loss/g_aux",
              "reg/r1", "reg/path_length", "aux/real_error", "aux/fake_accuracy", "speed/sec_per_iteration",
              "speed/images_per_second", "nan/skips_total"):
        assert t in tags, t
    assert [e.step for e in acc.Scalars("loss/d_adv")] == [1, 2, 3]


def test_missing_tensorboard_warns_once_and_trains(tmp_path, micro, monkeypatch):
    import builtins

    from infinitygan.training import monitor

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(monitor.RunLog, "_warned", False)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        res = train(load_config(micro), "procedural", tmp_path / "run", iterations=2, samples=False, **FAST)
    assert res["iteration"] == 2


# ----------------------------------------------------------------------------------- resume
#: the equivalence tests' runs: deterministic, seed 3, no intermediate checkpoints or samples
EQUIV = dict(FAST, samples=False, deterministic=True, checkpoint_every=100, seed=3)


def whole_and_half(cfg, root: Path) -> tuple[Path, Path]:
    """The run of ``cfg`` made in one go to iteration 7 (root/whole) and stopped at 4 (root/half).

    The iterations 4-6 hold R1 (t = 4, 6) and path-length (t = 6) steps.
    """
    whole, half = root / "whole", root / "half"
    train(cfg, "procedural", whole, iterations=7, **EQUIV)
    train(cfg, "procedural", half, iterations=4, **EQUIV)
    return whole, half


def assert_same_checkpoints(a: Path, b: Path) -> None:
    A, B = load_file(str(a)), load_file(str(b))
    assert A.keys() == B.keys()
    bad = [k for k in A if not torch.equal(A[k], B[k])]
    assert not bad, bad[:5]


def test_resume_equals_uninterrupted(tmp_path, micro):
    cfg = load_config(micro)
    a, b = whole_and_half(cfg, tmp_path)
    res = train(cfg, "procedural", b, iterations=7, resume=True, **EQUIV)
    assert res["iteration"] == 7
    assert_same_checkpoints(a / "checkpoints" / "ckpt-00000007.safetensors", b / "checkpoints" / "ckpt-00000007.safetensors")
    assert ckpt_meta(b / "checkpoints" / "ckpt-00000007.safetensors")["images_seen"] == "28"


def test_resume_restores_data_position_without_replay(tmp_path, micro, monkeypatch):
    """Resuming at iteration k must not load the first k batches' images."""
    from infinitygan.data import patches as data

    cfg = load_config(micro)
    out = tmp_path / "r"
    train(cfg, "procedural", out, iterations=2, samples=False, **FAST)
    seen = []
    orig = data.PatchDataset.__getitem__

    def spy(self, key):
        seen.append(key)
        return orig(self, key)

    monkeypatch.setattr(data.PatchDataset, "__getitem__", spy)
    train(cfg, "procedural", out, iterations=3, resume=True, samples=False, **FAST)
    assert len(seen) == cfg.training.batch_size  # exactly one batch loaded


def test_stray_part_files_are_ignored(tmp_path, micro, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "--config", micro, "--iterations", 2, "--out", out, "--workers", 0,
               "--device", "cpu", "--quiet")[0] == 0
    stray = out / "checkpoints" / ".ckpt-00000009.safetensors.abc123.part"
    stray.write_bytes(b"garbage from a killed writer")
    rc, outp, err = run(capsys, "info", out)
    assert rc == 0 and json.loads(outp)["iteration"] == 2
    rc, _, err = run(capsys, "train", "--config", micro, "--iterations", 3, "--out", out, "--resume",
                     "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert not stray.exists()
    assert ckpts(out)[-1] == "ckpt-00000003.safetensors"


def test_kill_9_leaves_a_loadable_newest_checkpoint(tmp_path, micro):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "infinitygan", "train", "--config", str(micro), "--iterations", "1000",
           "--checkpoint-every", "1", "--sample-every", "1000", "--out", str(out), "--workers", "0",
           "--device", "cpu", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(ckpts(out)) < 3:
            time.sleep(0.05)
        time.sleep(0.13)  # somewhere in the middle of an iteration or a write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ckpts(out), "no checkpoint was written"
    from infinitygan.api import load_model

    load_model(out)  # the newest checkpoint is complete
    newest = int(ckpts(out)[-1][5:13])
    res = train(load_config(micro), "procedural", out, iterations=newest + 1, resume=True, samples=False, **FAST)
    assert res["iteration"] == newest + 1


def _train_cmd(micro, out, *extra):
    return [sys.executable, "-m", "infinitygan", "train", "--config", str(micro), "--out", str(out), "--workers", "0",
            "--device", "cpu", "--quiet", *map(str, extra)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_checkpoint_then_resume_continues(tmp_path, micro, sig):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_train_cmd(micro, out, "--iterations", 100000, "--checkpoint-every", 100000,
                                       "--sample-every", 100000, "--log-every", 100000),
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "config.yaml").is_file() and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # into the iterations
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)  # a generous bound: it stops after the current iteration
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith(f"infinitygan: {signal.Signals(sig).name}: stopped at iteration")
    assert "--resume" in lines[0] and "Traceback" not in err
    names = ckpts(out)
    assert len(names) == 1 and names[0] in lines[0]
    done = int(names[0][5:13])
    assert done >= 1
    res = train(load_config(micro), "procedural", out, iterations=done + 2, resume=True, samples=False, **FAST)
    assert res["iteration"] == done + 2 and res["interrupted"] is None


def test_corrupt_newest_checkpoint_falls_back_with_one_warning(tmp_path, micro, capsys):
    out = tmp_path / "run"
    train(load_config(micro), "procedural", out, iterations=3, samples=False, checkpoint_every=1, **FAST)
    newest = out / "checkpoints" / "ckpt-00000003.safetensors"
    newest.write_bytes(newest.read_bytes()[:-500])  # truncated by a full disk, a bad copy, ...
    rc, _, err = run(capsys, "generate", "--model", out, "--width", 32, "--height", 32, "--out",
                     tmp_path / "x.png", "--quiet")
    assert rc == 0, err
    assert err.strip().splitlines() == [f"infinitygan: warning: checkpoint ckpt-00000003.safetensors of {out} is "
                                        "unreadable (truncated or corrupt); using ckpt-00000002.safetensors"]
    rc, _, err = run(capsys, "train", "--config", micro, "--out", out, "--resume", "--iterations", 4,
                     "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert "unreadable" in err and "using ckpt-00000002.safetensors" in err
    assert json.loads(run(capsys, "info", out)[1])["iteration"] == 4
    for name in ckpts(out):
        newest = out / "checkpoints" / name
        newest.write_bytes(b"")
    rc, _, err = run(capsys, "generate", "--model", out, "--width", 32, "--height", 32, "--out", tmp_path / "y.png")
    assert rc == 2 and "no readable checkpoint" in err


def test_run_files_get_normal_permissions(tmp_path, micro):
    old = os.umask(0o022)
    try:
        train(load_config(micro), "procedural", tmp_path / "run", iterations=1, **FAST)
    finally:
        os.umask(old)
    files = [*(tmp_path / "run" / "checkpoints").iterdir(), tmp_path / "run" / "config.yaml",
             *(tmp_path / "run" / "samples").iterdir()]
    assert files and all((f.stat().st_mode & 0o777) == 0o644 for f in files), [oct(f.stat().st_mode) for f in files]


# ------------------------------------------------------------------------------- NaN guard
def _nan_after(n_good: int, monkeypatch):
    calls = {"n": 0}
    orig = losses.d_logistic_loss

    def bad(real, fake):
        calls["n"] += 1
        val = orig(real, fake)
        return val * float("nan") if calls["n"] > n_good else val

    monkeypatch.setattr(losses, "d_logistic_loss", bad)
    return calls


def test_nan_guard_skips_and_stops(tmp_path, micro, monkeypatch, capsys):
    _nan_after(2, monkeypatch)
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--config", micro, "--iterations", 100, "--out", out, "--workers", 0,
                     "--device", "cpu", "--quiet", "--sample-every", 1000)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("infinitygan: error")]
    good = out / "checkpoints" / "ckpt-00000002.safetensors"
    assert lines == [f"infinitygan: error: training diverged: 20 consecutive non-finite steps at iteration 22; "
                     f"last good checkpoint: {good}"]
    assert ckpts(out) == ["ckpt-00000002.safetensors"]  # nothing written after the divergence began
    state = load_file(str(good))
    assert all(torch.isfinite(v).all() for v in state.values())


def test_nan_guard_isolated_skip(tmp_path, micro, monkeypatch):
    calls = {"n": 0}
    orig = losses.g_nonsaturating_loss

    def once(fake):
        calls["n"] += 1
        val = orig(fake)
        return val + float("inf") if calls["n"] == 2 else val

    monkeypatch.setattr(losses, "g_nonsaturating_loss", once)
    res = train(load_config(micro), "procedural", tmp_path / "run", iterations=4, samples=False,
                max_nonfinite=2, **FAST)
    assert res["iteration"] == 4 and res["nan_skips"] == 1
    meta = ckpt_meta(tmp_path / "run" / "checkpoints" / "ckpt-00000004.safetensors")
    progress = json.loads(meta["progress"])
    assert progress["nan_skips"] == 1 and progress["skipped"]["g"] == 1 and progress["nan_streak"] == 0
    state = load_file(str(tmp_path / "run" / "checkpoints" / "ckpt-00000004.safetensors"))
    assert state["g_optim.0.step"].item() == 4 - 1 + 2  # one G step skipped, PL at t = 0 and 3


def test_nan_guard_with_small_limit(tmp_path, micro, monkeypatch):
    _nan_after(0, monkeypatch)
    with pytest.raises(UserError, match=r"3 consecutive non-finite steps at iteration 3; last good checkpoint: none"):
        train(load_config(micro), "procedural", tmp_path / "run", iterations=10, samples=False,
              max_nonfinite=3, **FAST)


# ------------------------------------------------------------------------------ variants
def test_amp_bf16_on_cpu(tmp_path, micro):
    res = train(load_config(micro), "procedural", tmp_path / "run", iterations=2, amp="bf16", samples=False, **FAST)
    assert res["iteration"] == 2 and res["nan_skips"] == 0


# --------------------------------------------------------------------------- distributed
def _ddp_worker(cfg_path: str, out: str, result: str, iterations: int) -> None:
    res = train(load_config(cfg_path), "procedural", out, iterations=iterations, samples=False,
                checkpoint_every=100, **FAST)
    Path(f"{result}.{res['rank']}").write_text(json.dumps(res))


def test_two_process_gloo_matches_one_process(tmp_path, micro):
    """DDP (R1 and path length included: r1_every 2, pl_every 3) == one process on the global batch."""
    two, one = tmp_path / "two", tmp_path / "one"
    launch_local(2, _ddp_worker, str(micro), str(two), str(tmp_path / "res"), 4)
    r0 = json.loads((tmp_path / "res.0").read_text())
    r1 = json.loads((tmp_path / "res.1").read_text())
    assert r0["world_size"] == 2 and r0["images_seen"] == 16
    assert r0["fingerprint"] == r1["fingerprint"]  # bitwise identical replicas
    _ddp_worker(str(micro), str(one), str(tmp_path / "single"), 4)
    A = load_file(str(one / "checkpoints" / "ckpt-00000004.safetensors"))
    B = load_file(str(two / "checkpoints" / "ckpt-00000004.safetensors"))
    assert A.keys() == B.keys()
    for k in A:
        if k.endswith(".step"):
            assert torch.equal(A[k], B[k]), k
        else:
            torch.testing.assert_close(B[k], A[k], rtol=1e-3, atol=2e-5, msg=k)
    assert ckpt_meta(two / "checkpoints" / "ckpt-00000004.safetensors")["world_size"] == "2"


@pytest.mark.slow
def test_tiny_resume_equals_uninterrupted(tmp_path):
    cfg = load_config("tiny")
    kw = dict(FAST, samples=False, deterministic=True, checkpoint_every=100, batch_size=4)
    train(cfg, "procedural", tmp_path / "a", iterations=6, **kw)
    train(cfg, "procedural", tmp_path / "b", iterations=3, **kw)
    train(cfg, "procedural", tmp_path / "b", iterations=6, resume=True, **kw)
    A = load_file(str(tmp_path / "a" / "checkpoints" / "ckpt-00000006.safetensors"))
    B = load_file(str(tmp_path / "b" / "checkpoints" / "ckpt-00000006.safetensors"))
    assert all(torch.equal(A[k], B[k]) for k in A)
