"""Campaigns: a run kept in the repository as a compact state continues on a fresh checkout.

The checks of issue 30 section 1: a committed state restored into a checkout without runs/
trains on, its iteration count and weights continuing those of the run it was saved from; with
``moments: fp32`` the result equals the uninterrupted run bit for bit, with ``bf16`` (half the
optimizer bytes) it stays within float rounding of it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from infinitygan.campaign import progress, spec
from infinitygan.campaign.state import compact, expand
from infinitygan.cli import main
from infinitygan.errors import UserError
from test_training import MICRO, ckpt_meta, one_thread  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
RUNS_AS = "--quiet --deterministic --device cpu --workers 0"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infinitygan", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def new_campaign(root: Path, name: str, moments: str, total: int = 4) -> None:
    (root / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    assert main(["campaign", "new", name, "--root", str(root), "--moments", moments, "--options", RUNS_AS,
                 "--start", f"train --config micro.yaml --seed 3 --iterations {total} --checkpoint-every 100"]) == 0


def uninterrupted(root: Path, iterations: int) -> dict[str, torch.Tensor]:
    out = root / "whole"
    r = subprocess.run([sys.executable, "-m", "infinitygan", "train", "--config", "micro.yaml", "--seed", "3",
                        "--iterations", str(iterations), "--checkpoint-every", "100", *RUNS_AS.split(), "--out", out],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    return load_file(str(out / "checkpoints" / f"ckpt-{iterations:08d}.safetensors"))


def fresh_checkout_continues(tmp_path: Path, moments: str) -> tuple[dict, dict, Path]:
    """Start a campaign, save it at 4, delete runs/ (a fresh checkout), continue to 7."""
    root = tmp_path / "checkout"
    root.mkdir()
    new_campaign(root, "c", moments)
    r = cli("campaign", "train", "c", "--root", root)
    assert r.returncode == 0, r.stderr
    r = cli("campaign", "save", "c", "--root", root)
    assert r.returncode == 0, r.stderr
    saved = json.loads(r.stdout)
    assert saved["iteration"] == 4 and saved["images"] == 16
    shutil.rmtree(root / "runs")  # what a new session's checkout looks like
    r = cli("campaign", "train", "c", "--root", root, "--iterations", "7")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["restored"] and res["iteration"] == 7
    final = root / "runs" / "c" / "checkpoints" / "ckpt-00000007.safetensors"
    assert ckpt_meta(final)["images_seen"] == "28"
    return load_file(str(final)), uninterrupted(root, 7), root


def test_exact_moments_continue_bit_for_bit(tmp_path):
    """fp32 moments: the continued run equals the uninterrupted one in every tensor (the dropped
    first moments included: with beta1 = 0 each step overwrites them)."""
    got, want, root = fresh_checkout_continues(tmp_path, "fp32")
    assert got.keys() == want.keys()
    bad = [k for k in want if not torch.equal(got[k], want[k])]
    assert not bad, bad[:5]
    rows = progress.read(root / "campaigns" / "c" / "progress.tsv")
    assert [(r.event, r.iteration, r.images) for r in rows] == [("save", 4, 16)]


@pytest.mark.slow
def test_bf16_moments_continue_within_rounding(tmp_path):
    got, want, root = fresh_checkout_continues(tmp_path, "bf16")
    for prefix in ("g.", "d.", "g_ema."):
        keys = [k for k in want if k.startswith(prefix)]
        diff = max((got[k] - want[k]).abs().max().item() for k in keys)
        scale = max(want[k].abs().max().item() for k in keys)
        assert diff <= 1e-3 * scale, (prefix, diff, scale)
    # the state is smaller than the checkpoint it came from
    state = root / "campaigns" / "c" / "state.safetensors"
    ckpt = root / "whole" / "checkpoints" / "ckpt-00000007.safetensors"
    assert state.stat().st_size < 0.75 * ckpt.stat().st_size


def train_in_process(root: Path, out: Path, iterations: int) -> Path:
    """The campaign's start command run in this process (faster than a subprocess); its checkpoint."""
    from infinitygan.config import load_config
    from infinitygan.training.loop import train
    from infinitygan.training.options import RunOptions

    cfg = load_config(root / "micro.yaml").with_training(iterations=iterations, checkpoint_every=100)
    train(cfg, "procedural", out, seed=3, options=RunOptions(device="cpu", workers=0, quiet=True, deterministic=True))
    return out / "checkpoints" / f"ckpt-{iterations:08d}.safetensors"


def test_restored_state_is_the_saved_checkpoint(tmp_path, capsys):
    """restore writes G, D, G_ema, step counts and pl_mean exactly; second moments to bf16."""
    root = tmp_path / "checkout"
    root.mkdir()
    new_campaign(root, "c", "bf16")
    ckpt = train_in_process(root, root / "runs" / "c", 4)
    src = load_file(str(ckpt))
    assert main(["campaign", "save", "c", "--root", str(root)]) == 0
    shutil.rmtree(root / "runs")
    assert main(["campaign", "restore", "c", "--root", str(root)]) == 0
    back = load_file(str(ckpt))
    assert back.keys() == src.keys()
    for k in src:
        if k.endswith(".exp_avg"):
            assert not back[k].any()
        elif k.endswith(".exp_avg_sq"):
            assert torch.equal(back[k], src[k].to(torch.bfloat16).float())
        else:
            assert torch.equal(back[k], src[k]), k
    assert (root / "runs" / "c" / "config.yaml").is_file()
    capsys.readouterr()
    # a second restore finds the run up to date
    assert main(["campaign", "restore", "c", "--root", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["restored"] is None
    # the newest checkpoint's SWD, logged with its iteration and images
    assert main(["campaign", "eval", "c", "--root", str(root), "--num", "8", "--scales", "patch,1", "--seeds", "0,1",
                 "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["iteration"] == 4 and res["swd_1x"] > 0 and res["swd_patch"] > 0
    row = progress.read(root / "campaigns" / "c" / "progress.tsv")[-1]
    assert (row.event, row.iteration, row.images) == ("eval", 4, 16)
    assert row.metrics["swd_1x"] == pytest.approx(res["swd_1x"], rel=1e-3) and "eval seeds 0,1" in row.note



def test_eval_of_kept_checkpoints_draws_the_learning_curve(tmp_path, capsys, monkeypatch):
    """`campaign eval --checkpoint` scores earlier checkpoints (kept by --keep-every): each row has
    its own iteration and images, and hours interpolated between the state's clock and now."""
    from infinitygan.campaign import runner
    from infinitygan.config import load_config
    from infinitygan.training.loop import train
    from infinitygan.training.options import RunOptions

    root = tmp_path / "checkout"
    root.mkdir()
    new_campaign(root, "c", "bf16")
    run = root / "runs" / "c"
    train_in_process(root, run, 2)
    assert main(["campaign", "save", "c", "--root", str(root), "--train-seconds", "3600", "--cpu-seconds", "1800"]) == 0
    cfg = load_config(root / "micro.yaml").with_training(iterations=6, checkpoint_every=1)
    train(cfg, "procedural", run, seed=3, resume=True,
          options=RunOptions(device="cpu", workers=0, quiet=True, keep=1, keep_every=2))
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["ckpt-00000002.safetensors", "ckpt-00000004.safetensors", "ckpt-00000006.safetensors"]
    runner._set_clock(spec.load("c", root), 3600, 1800)  # what `campaign train` leaves for the next save
    capsys.readouterr()
    ckpt = run / "checkpoints"
    import infinitygan.api as api

    loaded, load = [], api.load_model
    monkeypatch.setattr(api, "load_model", lambda path=None: loaded.append(Path(path).name) or load(path))
    assert main(["campaign", "eval", "c", "--root", str(root), "--num", "8", "--scales", "1", "--quiet",
                 "--checkpoint", str(ckpt / "ckpt-00000006.safetensors"),
                 "--checkpoint", str(ckpt / "ckpt-00000004.safetensors")]) == 0
    res = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["iteration"] for r in res] == [4, 6]  # in the curve's order
    rows = progress.read(root / "campaigns" / "c" / "progress.tsv")[-2:]
    assert [(r.iteration, r.images) for r in rows] == [(4, 16), (6, 24)]
    assert rows[0].train_hours == pytest.approx(1.5) and rows[0].cpu_hours == pytest.approx(0.75)
    assert "hours interpolated" in rows[0].note
    assert rows[1].train_hours == pytest.approx(2.0) and "interpolated" not in rows[1].note
    assert loaded == ["ckpt-00000004.safetensors", "ckpt-00000006.safetensors"]  # each scored its own weights
    # a file that is not a training checkpoint is refused in one line
    model = tmp_path / "model.safetensors"
    assert main(["init", "--preset", str(root / "micro.yaml"), "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["campaign", "eval", "c", "--root", str(root), "--num", "8", "--quiet", "--checkpoint", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a training checkpoint" in err and len(err.splitlines()) == 1


def test_compact_drops_first_moments_only():
    t = {"g.w": torch.randn(3), "g_optim.0.exp_avg": torch.randn(3), "g_optim.0.exp_avg_sq": torch.rand(3),
         "g_optim.0.step": torch.tensor(5.0), "pl_mean": torch.tensor(0.5)}
    c = compact(t, "fp32")
    assert set(c) == set(t) - {"g_optim.0.exp_avg"}
    e = expand(compact(t, "bf16"))
    assert set(e) == set(t) and not e["g_optim.0.exp_avg"].any()
    assert e["g_optim.0.exp_avg_sq"].dtype == torch.float32
    assert torch.allclose(e["g_optim.0.exp_avg_sq"], t["g_optim.0.exp_avg_sq"], rtol=2 ** -8)
    assert torch.equal(e["g.w"], t["g.w"]) and torch.equal(e["g_optim.0.step"], t["g_optim.0.step"])


def test_adam_first_moment_is_overwritten():
    """The premise of dropping exp_avg: with beta1 = 0 a step from zero first moments equals one
    from any first moments, bit for bit."""
    from infinitygan.training.nets import make_adam

    def step(m0: float) -> torch.Tensor:
        p = torch.nn.Parameter(torch.linspace(-1, 1, 7, dtype=torch.float32))
        opt = make_adam([p], lr=0.01, every=1)
        p.grad = torch.full_like(p, 0.3)
        opt.step()
        opt.state[p]["exp_avg"].fill_(m0)
        p.grad = torch.linspace(2, -3, 7)
        opt.step()
        return p.detach().clone()

    assert torch.equal(step(0.0), step(123.0))


@pytest.mark.parametrize("args, message", [
    (["status", "nope"], "no campaign 'nope'"),
    (["new", "Bad Name", "--start", "train"], "campaign name"),
    (["new", "x", "--start", "generate --seed 1"], "start must be a `train ...` command"),
    (["new", "x", "--start", "train --out elsewhere"], "--out is set by the campaign"),
    (["save", "x"], "no campaign 'x'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    rc = main(["campaign", *args, "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_save_refuses_without_a_run_and_eval_spec_is_checked(tmp_path, capsys):
    assert main(["campaign", "new", "x", "--start", "train --preset tiny", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["campaign", "save", "x", "--root", str(tmp_path)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    with pytest.raises(UserError, match="eval.num"):
        spec.from_dict({"name": "y", "start": "train", "eval": {"num": 1}}, tmp_path)
    with pytest.raises(UserError, match="unknown field"):
        spec.from_dict({"name": "y", "start": "train", "iterations": 5}, tmp_path)


def test_progress_log_round_trip(tmp_path):
    p = tmp_path / "progress.tsv"
    progress.append(p, progress.Row("save", 250, 2000, 0.25, note="first\tsave"))
    progress.append(p, progress.Row("eval", 250, 2000, 0.25, 0.3, {"swd_1x": 83.94, "swd_8x": 119.9}))
    rows = progress.read(p)
    assert [r.event for r in rows] == ["save", "eval"]
    assert rows[0].note == "first save" and rows[1].metrics == {"swd_1x": 83.94, "swd_8x": 119.9}
    assert rows[1].cpu_hours == 0.3
    assert p.read_text().splitlines()[0].split("\t") == list(progress.COLUMNS)


def test_a_checkpoint_from_elsewhere_becomes_the_state(tmp_path, capsys):
    """`save --checkpoint FILE` (a lent GPU's run, or a fork): the state and runs/NAME continue from it."""
    root = tmp_path / "checkout"
    root.mkdir()
    new_campaign(root, "c", "bf16")
    ckpt = train_in_process(root, tmp_path / "gpu", 3)
    capsys.readouterr()
    assert main(["campaign", "save", "c", "--root", str(root), "--checkpoint", str(ckpt), "--note", "from the GPU"]) == 0
    assert json.loads(capsys.readouterr().out)["iteration"] == 3
    assert main(["campaign", "status", "c", "--root", str(root)]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["state_iteration"], st["run_iteration"]) == (3, 3)
    assert main(["campaign", "save", "c", "--root", str(root), "--checkpoint", str(root / "micro.yaml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err


def test_a_fork_leg_replaces_the_run_and_its_constants_hold(tmp_path, capsys):
    """The next leg at a lower learning rate: fork runs/NAME's newest checkpoint (``train --fork
    --set lr=...``), save the fork as the state; runs/NAME is set aside (not deleted) and continues
    from the fork, its config.yaml carrying the new lr through `campaign train`, which trains on
    to the campaign's total (the start command's), not the fork's own one-iteration total."""
    root = tmp_path / "checkout"
    root.mkdir()
    new_campaign(root, "c", "bf16", total=6)
    train_in_process(root, root / "runs" / "c", 4)
    assert main(["campaign", "save", "c", "--root", str(root)]) == 0
    fork_out = root / "runs" / "c-lr"
    r = cli("train", "--fork", root / "runs" / "c" / "checkpoints" / "ckpt-00000004.safetensors", "--set", "lr=0.0005",
            "--iterations", "5", "--checkpoint-every", "100", *RUNS_AS.split(), "--out", fork_out)
    assert r.returncode == 0, r.stderr
    capsys.readouterr()
    assert main(["campaign", "save", "c", "--root", str(root), "--checkpoint",
                 str(fork_out / "checkpoints" / "ckpt-00000005.safetensors"), "--note", "leg 2: lr 0.0005"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["iteration"] == 5
    aside = Path(saved["previous_run"])
    assert aside.name == "c.before-4" and (aside / "checkpoints" / "ckpt-00000004.safetensors").exists()
    run = root / "runs" / "c"
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["lr"] == 0.0005
    r = cli("campaign", "train", "c", "--root", root)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert (res["restored"], res["iteration"]) == (None, 6)
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["lr"] == 0.0005
    assert ckpt_meta(run / "checkpoints" / "ckpt-00000006.safetensors")["images_seen"] == "24"


def test_budgets_stop_the_child_with_sigterm():
    """run_budgeted: the wall-clock budget and the CPU-time budget each end a run with SIGTERM
    (the training loop then checkpoints: test_training), and the CPU seconds are counted."""
    from infinitygan.campaign.runner import run_budgeted

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    rc, wall, _ = run_budgeted(sleeper, 0.5, None)
    assert rc == -15 and wall < 30
    spinner = [sys.executable, "-c", "while True: pass"]
    rc, wall, cpu = run_budgeted(spinner, 60, 0.5, poll=0.1)
    assert rc == -15 and 0.4 <= cpu < 30, (wall, cpu)
    rc, _, _ = run_budgeted([sys.executable, "-c", "pass"], None, None)
    assert rc == 0
