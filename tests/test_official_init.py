"""``train --init-from``: continuing the authors' own training run (infinitygan.training.official_init).

Uses their initial training checkpoint of ../shared/fixtures/official-train/ (a missing fixture
fails, as in test_official_training_parity.py) and files derived from it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from infinitygan.official import checkpoint as O
from infinitygan.cli import main
from infinitygan.config import TrainingConfig
from infinitygan.io import runs
from infinitygan.training.official_init import official_training_state

CKPT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official-train" / "train_init_ckpt.pth.tar"


@pytest.fixture(scope="module")
def their():
    if not CKPT.is_file():
        pytest.fail(f"the authors' training fixture is missing: {CKPT}")
    return torch.load(CKPT, weights_only=True)


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def with_adam_state(their: dict, seed: int = 0) -> dict:
    """Their checkpoint with non-empty Adam states (as after many iterations)."""
    g = torch.Generator().manual_seed(seed)
    obj = dict(their)
    for net in ("g", "d"):
        names = O.official_parameter_names(their[net], net)
        state = {i: {"step": float(100 + i), "exp_avg": torch.randn(their[net][n].shape, generator=g),
                     "exp_avg_sq": torch.rand(their[net][n].shape, generator=g)} for i, n in enumerate(names)}
        obj[f"{net}_optim"] = {"state": state, "param_groups": their[f"{net}_optim"]["param_groups"]}
    obj["best_fid"] = np.float64(12.5)
    return obj


def test_import_maps_every_tensor_and_adam_slot(their, tmp_path):
    path = tmp_path / "theirs.pth.tar"
    obj = with_adam_state(their)
    torch.save(obj, path)
    cfg, tensors, meta = official_training_state(path, TrainingConfig(batch_size=4))
    assert meta["iteration"] == str(int(their["iter"]))
    assert math.isclose(float(tensors[runs.PL_MEAN]),
                        float(their["mean_path_lengths"][0]) * math.sqrt(cfg.generator.style_dim), rel_tol=1e-6)
    from infinitygan.discriminator import Discriminator
    from infinitygan.generator import Generator

    G, D = Generator(cfg.generator), Discriminator(cfg.discriminator, cfg.generator.patch_size)
    for net, module, prefix, opt_prefix, conv in (("g", G, runs.G, runs.G_OPTIM, O.convert_g_key),
                                                  ("d", D, runs.D, runs.D_OPTIM, O.convert_d_key)):
        ours = [n for n, _ in module.named_parameters()]
        names = O.official_parameter_names(their[net], net)
        mapped = 0
        for i, name in enumerate(names):
            new = conv(name)
            if new is None:
                assert name == "texture_synthesizer.const_z.input"  # unused: no slot here
                continue
            j = ours.index(new)
            st = obj[f"{net}_optim"]["state"][i]
            assert torch.equal(tensors[f"{prefix}{new}"], O.squeeze_leading(name, their[net][name]).float())
            assert torch.equal(tensors[f"{opt_prefix}{j}.exp_avg"], O.squeeze_leading(name, st["exp_avg"]))
            assert torch.equal(tensors[f"{opt_prefix}{j}.exp_avg_sq"], O.squeeze_leading(name, st["exp_avg_sq"]))
            assert float(tensors[f"{opt_prefix}{j}.step"]) == st["step"]
            mapped += 1
        assert mapped == len(ours)
    for k, v in G.state_dict().items():
        assert tensors[f"{runs.G_EMA}{k}"].shape == v.shape


def test_train_init_from_continues_their_run(their, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--init-from", CKPT, "--data", "procedural", "--out", out,
                         "--iterations", int(their["iter"]) + 2, "--batch", 4, "--workers", 0, "--quiet",
                         "--device", "cpu")
    assert rc == 0, err
    ckpt = runs.list_checkpoints(out)[-1]
    state, cfg, meta = runs.load_newest_checkpoint(out)[1:]
    assert meta["iteration"] == str(int(their["iter"]) + 2)
    assert cfg.generator.zg_dim == their["g_ema"]["texture_synthesizer.mapping.1.weight"].shape[1]
    assert cfg.discriminator.channels[0] == their["d"]["convs.0.0.weight"].shape[0]
    # both optimizers made their steps on top of the imported (empty) state: D + R1 at 16, D at 17
    assert float(state[f"{runs.D_OPTIM}0.step"]) == 3.0 and float(state[f"{runs.G_OPTIM}0.step"]) == 3.0
    # the imported weights moved, the run resumes like any other
    w0 = their["d"]["convs.0.0.weight"].float()
    assert not torch.equal(state["d.from_rgb.0.weight"], w0)
    rc, _, err = run_cli(capsys, "train", "--out", out, "--resume", "--iterations", int(their["iter"]) + 3,
                         "--workers", 0, "--quiet", "--device", "cpu")
    assert rc == 0, err
    assert ckpt.name != runs.list_checkpoints(out)[-1].name


class _RunsAShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(their, tmp_path) -> dict[str, tuple[Path, str]]:
    marker = tmp_path / "pwned"
    files = {}
    p = tmp_path / "evil.pth.tar"
    torch.save({**their, "best_fid": _RunsAShell(marker)}, p)
    files["pickled code"] = (p, "could run arbitrary code")
    p = tmp_path / "truncated.pth.tar"
    p.write_bytes(CKPT.read_bytes()[:4096])
    files["truncated"] = (p, "truncated or another format")
    p = tmp_path / "text.pth.tar"
    p.write_text("not a checkpoint\n")
    files["text"] = (p, "not a plain PyTorch checkpoint")
    p = tmp_path / "g_ema_only.pth.tar"
    torch.save({"g_ema": their["g_ema"], "iter": 5}, p)
    files["generator alone"] = (p, "not a whole training checkpoint")
    p = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(3)}, "epoch": 3}, p)
    files["foreign"] = (p, "not a whole training checkpoint")
    p = tmp_path / "bad_optim.pth.tar"
    bad = dict(their)
    bad["d_optim"] = {"state": {}, "param_groups": [{"params": [0, 1], "lr": 0.1, "betas": (0, 0.9)}]}
    torch.save(bad, p)
    files["optimizer of another model"] = (p, "covers 2 parameters")
    return files


def test_bad_init_from_files_are_refused_in_one_line(their, tmp_path, capsys):
    for what, (path, msg) in _bad_files(their, tmp_path).items():
        out = tmp_path / f"run-{path.stem}"
        rc, stdout, err = run_cli(capsys, "train", "--init-from", path, "--data", "procedural", "--out", out,
                                  "--iterations", 100, "--workers", 0, "--quiet")
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (what, err)
        assert msg in lines[0], (what, lines[0])
        assert "Traceback" not in err and not out.exists(), what
    assert not (tmp_path / "pwned").exists()


def test_init_from_refuses_resume_and_a_finished_run(their, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--init-from", CKPT, "--resume", "--out", out)
    assert rc == 2 and "--resume" in err and not out.exists()
    rc, _, err = run_cli(capsys, "train", "--init-from", CKPT, "--out", out, "--iterations", int(their["iter"]))
    assert rc == 2 and "must be larger" in err and not out.exists()
