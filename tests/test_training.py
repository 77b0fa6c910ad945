"""Training: the loop, checkpoints, resume, the NaN guard, data parallelism and the CLI.

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

import numpy as np
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


def test_colour_consistency_weight_pairs_the_batch_and_changes_only_g(tmp_path):
    """The colour-consistency loss (not in the paper) needs G's batch in pairs; with weight 0 and
    no diversity loss the batch has none (the runs so far are unchanged); with a weight it moves
    G's first step, not D's."""
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.phases import uses_pairs
    from infinitygan.parallel.env import DistContext

    base = load_config(write_cfg(tmp_path / "a.yaml", diversity_weight=0.0))
    col = load_config(write_cfg(tmp_path / "b.yaml", diversity_weight=0.0, colour_consistency_weight=10.0))
    assert not uses_pairs(base) and uses_pairs(col)
    assert BatchPlan.make(col, None, 0, DistContext(), pairs=uses_pairs(col)).pair_half == 2
    logs = {}
    for name, cfg in (("base", base), ("col", col)):
        out = tmp_path / name
        train(cfg, "procedural", out, iterations=1, seed=0, samples=False, **FAST)
        logs[name] = load_file(str(sorted((out / "checkpoints").glob("ckpt-*.safetensors"))[-1]))
    g = [k for k in logs["base"] if k.startswith("g.")]
    d = [k for k in logs["base"] if k.startswith("d.")]
    assert g and d
    # D's step (phase d, before G's) sees the same inputs: the pairs only change G's batch
    assert all(torch.equal(logs["base"][k], logs["col"][k]) for k in d)
    assert any(not torch.equal(logs["base"][k], logs["col"][k]) for k in g)


def test_colour_pairs_are_two_places_of_one_canvas(tmp_path):
    """Colour-only pairs share zg, style mixing, the vertical coordinate and its label, and differ
    in zl and horizontal phase; diversity pairs (paper Eq. 2) share every coordinate."""
    from infinitygan.parallel.env import DistContext
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.nets import build_nets
    from infinitygan.training.phases import colour_pairs_only, uses_pairs

    for name, extra, own in (("col", {"diversity_weight": 0.0, "colour_consistency_weight": 1.0}, True),
                             ("div", {"diversity_weight": 1.0}, False)):
        cfg = load_config(write_cfg(tmp_path / f"{name}.yaml", **extra))
        assert colour_pairs_only(cfg) is own
        nets = build_nets(cfg, DistContext(), 0)
        x = BatchPlan.make(cfg, nets.G.geometry, 0, DistContext(), pairs=uses_pairs(cfg),
                           own_phase=colour_pairs_only(cfg)).g_inputs(5)
        k = x.pairs
        assert k == 2
        for t in (x.zg, x.label, x.mix_index, x.coords[:, :1]):
            assert torch.equal(t[:k], t[k:2 * k])
        assert not torch.equal(x.zl[:k], x.zl[k:2 * k])
        assert torch.equal(x.coords[:k, 1:], x.coords[k:2 * k, 1:]) is (not own)


@pytest.mark.parametrize("batch,pairs,group", [(16, 8, 4), (8, 4, 4), (12, 6, 4), (16, 8, 2), (4, 2, 4)])
def test_pair_separating_order_keeps_pairs_out_of_one_stddev_group(batch, pairs, group):
    """G's colour pairs reach D in an order where no minibatch-stddev group holds both members
    (the groups of discriminator.minibatch_stddev, checked on its own output)."""
    from infinitygan.discriminator import minibatch_stddev
    from infinitygan.training.phases import mbstd_groups, pair_separating_order

    # the groups as minibatch_stddev forms them: a one-hot sample per position, its stddev channel
    # is non-zero exactly at the positions that share its group
    groups = mbstd_groups(batch, group)
    for p in range(batch):
        x = torch.zeros(batch, 1, 1, 1)
        x[p] = 1.0
        y = minibatch_stddev(x, group)[:, 1, 0, 0]
        assert {q for q in range(batch) if y[q] > 1e-3} == {q for q in range(batch) if groups[q] == groups[p]}
    order = pair_separating_order(batch, pairs, group).tolist()
    assert sorted(order) == list(range(batch))
    where = {s: i for i, s in enumerate(order)}
    together = [j for j in range(pairs) if groups[where[j]] == groups[where[j + pairs]]]
    if len(set(groups)) == 1:
        assert order == list(range(batch)) and together == list(range(pairs))  # nothing to separate
    else:
        assert together == []
        # the plain order has the pairs together whenever pairs is a multiple of batch / group
        if pairs % len(set(groups)) == 0:
            assert all(groups[j] == groups[j + pairs] for j in range(pairs))


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


def _photos(folder: Path, n: int, seed: int = 0, size=(40, 50)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_small_dataset_passes_and_resume(tmp_path, micro):
    """A 5-image folder, batches of 4: batches run across passes over the data; resume still exact."""
    folder = _photos(tmp_path / "imgs", 5)
    cfg = load_config(micro)
    kw = dict(FAST, samples=False, checkpoint_every=100)
    train(cfg, str(folder), tmp_path / "a", iterations=4, **kw)
    train(cfg, str(folder), tmp_path / "b", iterations=2, **kw)
    train(cfg, str(folder), tmp_path / "b", iterations=4, resume=True, **kw)
    A = load_file(str(tmp_path / "a" / "checkpoints" / "ckpt-00000004.safetensors"))
    B = load_file(str(tmp_path / "b" / "checkpoints" / "ckpt-00000004.safetensors"))
    assert all(torch.equal(A[k], B[k]) for k in A)
    # 4 iterations x 4 images = 16 = 3 whole passes over 5 images (+ 1)
    assert json.loads(ckpt_meta(tmp_path / "a" / "checkpoints" / "ckpt-00000004.safetensors")["progress"])["passes"] == 3


def test_few_shot_folder_smaller_than_a_batch_trains(tmp_path, micro, capsys):
    """3 photos, batch 4 (the 11-photos-batch-16 case): trains, one warning line."""
    folder = _photos(tmp_path / "few", 3)
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 3, "--out",
                     tmp_path / "run", "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert warned == ["infinitygan: warning: 3 images, fewer than one batch of 4: images repeat within batches "
                      "(few-shot training)"], err
    assert ckpts(tmp_path / "run")[-1] == "ckpt-00000003.safetensors"


def test_tiny_images_are_skipped_with_one_warning(tmp_path, micro, capsys):
    """1x1 and 20x30 images are not upsampled into the data: one line for all of them, also with
    loader workers."""
    folder = _photos(tmp_path / "mixed", 4)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "dot.png")
    Image.new("RGB", (30, 20), (10, 200, 10)).save(folder / "small.png")
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 1, "--out",
                     tmp_path / "run", "--workers", 1, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and "skipped 2 images smaller than 32 px" in warned[0], err
    from infinitygan.data.datasets import open_dataset

    with pytest.warns(UserWarning):
        assert len(open_dataset(str(folder), 33)) == 4


def test_sampler_positions_are_arithmetic_and_split_between_ranks():
    """Batch t of the stream is positions [tB, (t+1)B); rank r takes every W-th; starting at t
    gives exactly the tail of the stream from 0."""
    from itertools import islice

    from infinitygan.data.sampling import ResumableSampler

    n, B = 7, 4
    whole = list(islice(iter(ResumableSampler(n, B, seed=3)), 5 * B))
    assert sorted(i for q, i in whole[:n]) == list(range(n))  # pass 0 is a permutation
    assert [q for q, _ in whole] == [p // n for p in range(5 * B)]
    later = list(islice(iter(ResumableSampler(n, B, seed=3, start_iteration=2)), 3 * B))
    assert later == whole[2 * B:]
    shares = [list(islice(iter(ResumableSampler(n, B, seed=3, rank=r, world_size=2)), 2 * 2)) for r in (0, 1)]
    for t in range(2):
        batch = whole[t * B:(t + 1) * B]
        assert shares[0][2 * t:2 * t + 2] == batch[0::2] and shares[1][2 * t:2 * t + 2] == batch[1::2]


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


def test_texture_coordinates_visit_every_vertical_phase():
    """Texture coordinates are periodic vertically: training draws every one of the `period`
    phases (not 10 scenery starts), jittered by at most half a cell like the horizontal axis;
    scenery keeps its V vertical starts."""
    import math

    from infinitygan.config import CoordConfig
    from infinitygan.coords import sample_training_coords

    cfg = CoordConfig(system="texture")
    g = torch.Generator().manual_seed(0)
    coords, label = sample_training_coords(cfg, 3000, 2, g, dtype=torch.float64, jitter=False)
    # angle pi (2 m / period - 1) of phase m
    phase = torch.atan2(coords[:, 1, 0, 0], coords[:, 0, 0, 0]) / (2 * math.pi) * cfg.period + cfg.period / 2
    cells = torch.round(phase).long() % cfg.period
    assert torch.allclose(phase, torch.round(phase), atol=1e-6)
    assert set(cells.tolist()) == set(range(cfg.period))
    assert (label == 0).all()
    jit, _ = sample_training_coords(cfg, 500, 2, g, dtype=torch.float64)
    for c, s_ in ((0, 1), (2, 3)):  # vertical, horizontal: offsets within half a cell of a lattice phase
        ph = torch.atan2(jit[:, s_, 0, 0], jit[:, c, 0, 0]) / (2 * math.pi) * cfg.period + cfg.period / 2
        off = (ph - torch.round(ph)).abs()
        assert off.max() <= 0.5 + 1e-9 and off.max() > 0.4
    scen, lab = sample_training_coords(CoordConfig(), 400, 2, g, jitter=False)
    assert len(set(scen[:, 0, 0, 0].tolist())) == 10 and len(set(lab.tolist())) == 10


def test_texture_trains_without_the_fake_vertical_loss(tmp_path):
    base = json.loads(json.dumps(MICRO))
    base["generator"]["coords"] = {"system": "texture"}
    cfg = load_config(write_cfg(tmp_path / "tex.yaml", base))
    train(cfg, "procedural", tmp_path / "run", iterations=1, samples=False, **FAST)
    last = json.loads(ckpt_meta(tmp_path / "run" / "checkpoints" / "ckpt-00000001.safetensors")["progress"])["last"]
    assert "loss/d_aux_real" in last and "loss/diversity" in last
    assert not any(k in last for k in ("loss/d_aux_fake", "loss/g_aux", "aux/fake_error"))


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


# ------------------------------------------------------------------------------------ data
def test_folder_with_corrupt_and_grayscale_files(tmp_path, micro, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"rgb{i}.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(folder / "gray.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 2, "--out", out,
                     "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and warned[0].startswith("infinitygan: warning: skipped 1 unreadable"), err
    assert ckpts(out)[-1] == "ckpt-00000002.safetensors"


def test_prepare_lmdb_and_train_on_it(tmp_path, micro, capsys):
    pytest.importorskip("lmdb")
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    db = tmp_path / "data.lmdb"
    rc, _, err = run(capsys, "prepare", folder, "--out", db, "--full-size", 33, "--pre-resize", 0, "--quiet")
    assert rc == 0, err
    assert (db / "data.mdb").is_file()
    rc, _, err = run(capsys, "prepare", folder, "--out", db, "--full-size", 33, "--quiet")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "train", "--config", micro, "--data", db, "--iterations", 1, "--out", tmp_path / "run",
                     "--workers", 2, "--device", "cpu", "--quiet")
    assert rc == 0, err


# ------------------------------------------------------------------------------ variants
def test_amp_bf16_on_cpu(tmp_path, micro):
    res = train(load_config(micro), "procedural", tmp_path / "run", iterations=2, amp="bf16", samples=False, **FAST)
    assert res["iteration"] == 2 and res["nan_skips"] == 0


def test_baseline_configs_skip_diversity_and_fake_aux(tmp_path, monkeypatch):
    base = json.loads(json.dumps(MICRO))
    base["generator"].update(gs_layers=0, gs_channels=8, coords={"system": "object"})
    cfg = load_config(write_cfg(tmp_path / "base.yaml", base))
    called = []
    orig = losses.diversity_loss
    monkeypatch.setattr(losses, "diversity_loss", lambda *a, **k: called.append(1) or orig(*a, **k))
    res = train(cfg, "procedural", tmp_path / "run", iterations=2, samples=False, **FAST)
    assert res["iteration"] == 2 and not called
    progress = json.loads(ckpt_meta(tmp_path / "run" / "checkpoints" / "ckpt-00000002.safetensors")["progress"])
    assert "loss/d_aux_fake" not in progress["last"] and "loss/g_aux" not in progress["last"]
    assert "loss/diversity" not in progress["last"] and "loss/d_aux_real" in progress["last"]


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
