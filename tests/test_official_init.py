"""``train --init-from``: continuing the authors' own training run (infinitygan.training.official_init).

Uses their initial training checkpoint of ../shared/fixtures/official-train/ and files derived
from it (a missing fixture skips, or fails under CI / INFINITYGAN_REQUIRE_FIXTURES=1:
``conftest.fixture_file``).
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

from conftest import fixture_file, fixtures_root, official_fixture

CKPT = fixtures_root() / "official-train" / "train_init_ckpt.pth.tar"
WHAT = "the authors' training fixture (../shared/fixtures/official-train/, see README)"


@pytest.fixture(scope="module")
def their():
    return torch.load(fixture_file(CKPT, WHAT), weights_only=True)


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def outputs():
    """What their training iteration recorded (Adam's state after each optimizer's second step,
    by parameter name, in the order their driver walked ``named_parameters()``)."""
    return torch.load(fixture_file(CKPT.parent / "train_outputs.pt", WHAT), weights_only=True)


def listed_g_order() -> list[str]:
    """Their G's ``parameters()`` order from their own listings (../shared/fixtures/official/):
    the reduced-width model's keys in ``state_dict()`` order, without the buffers the full
    listing names (state_dict = each module's parameters, then its buffers, then its children,
    so removing the buffers leaves the parameters in ``parameters()`` order)."""
    tiny = json.loads(official_fixture("g_ema_keys_tiny.json").read_text())
    full = json.loads(official_fixture("g_ema_keys_full.json").read_text())
    buffers = set(full["buffer_keys"])
    assert [k for k, *_ in tiny["keys"]] == [k for k, *_ in full["keys"]]  # (their README: same keys, same order)
    return [k for k, *_ in tiny["keys"] if k not in buffers]


def recorded_order(outputs: dict, net: str) -> list[str]:
    """The ``net`` parameters their run recorded Adam state for, in the recorded order (PL: G's
    second step, R1: D's)."""
    head = f"{'PL' if net == 'g' else 'R1'}/adam_exp_avg_sq/{net}."
    return [k[len(head):] for k in outputs if k.startswith(head)]


def independent_order(outputs: dict, net: str) -> list[str]:
    """Their ``parameters()`` order, from their listings, not from our importer."""
    return listed_g_order() if net == "g" else recorded_order(outputs, "d")


def with_adam_state(their: dict, outputs: dict, seed: int = 0) -> dict:
    """Their checkpoint with non-empty Adam states (as after many iterations), indexed in their
    parameter order as their listings give it."""
    g = torch.Generator().manual_seed(seed)
    obj = dict(their)
    for net in ("g", "d"):
        names = independent_order(outputs, net)
        state = {i: {"step": float(100 + i), "exp_avg": torch.randn(their[net][n].shape, generator=g),
                     "exp_avg_sq": torch.rand(their[net][n].shape, generator=g)} for i, n in enumerate(names)}
        obj[f"{net}_optim"] = {"state": state, "param_groups": their[f"{net}_optim"]["param_groups"]}
    obj["best_fid"] = np.float64(12.5)
    return obj


def test_their_parameter_order_is_the_one_their_listings_give(their, outputs):
    """The order their Adam state is indexed by, as our importer derives it from a state dict,
    equals their key listings' (G, both listings) and their run's record (D; G without the
    unused constant input, which never gets a gradient, hence no Adam state)."""
    assert len(their["g_optim"]["param_groups"][0]["params"]) == len(listed_g_order())
    assert O.official_parameter_names(their["g"], "g") == listed_g_order()
    full = json.loads(official_fixture("g_ema_keys_full.json").read_text())
    full_keys = [k for k, *_ in full["keys"]]
    assert O.official_parameter_names(dict.fromkeys(full_keys), "g") == \
        [k for k in full_keys if k not in set(full["buffer_keys"])]
    d_names = O.official_parameter_names(their["d"], "d")
    assert d_names == recorded_order(outputs, "d") and len(d_names) == len(their["d_optim"]["param_groups"][0]["params"])
    g_rec = recorded_order(outputs, "g")
    assert [n for n in listed_g_order() if n in set(g_rec)] == g_rec
    assert set(listed_g_order()) - set(g_rec) == {"texture_synthesizer.const_z.input"}


def test_their_recorded_adam_state_lands_on_the_same_parameters(their, outputs, tmp_path):
    """Their run's own Adam state (exp_avg_sq and step after each optimizer's second step, by
    name), indexed as their optimizers index it: each value is imported onto our parameter of the
    same name (convert_g_key / convert_d_key), whatever our importer thinks the order is."""
    obj = dict(their)
    g = torch.Generator().manual_seed(1)
    for net in ("g", "d"):
        ph = "PL" if net == "g" else "R1"
        state = {}
        for i, name in enumerate(independent_order(outputs, net)):
            sq = outputs.get(f"{ph}/adam_exp_avg_sq/{net}.{name}")
            if sq is not None:  # (G's constant input: no gradient, no state, as in their optimizer)
                state[i] = {"step": float(outputs[f"{ph}/adam_step/{net}.{name}"]),
                            "exp_avg": torch.randn(sq.shape, generator=g), "exp_avg_sq": sq.float()}
        obj[f"{net}_optim"] = {"state": state, "param_groups": their[f"{net}_optim"]["param_groups"]}
    path = tmp_path / "theirs.pth.tar"
    torch.save(obj, path)
    cfg, tensors, _ = official_training_state(path, TrainingConfig(batch_size=4))
    from infinitygan.discriminator import Discriminator
    from infinitygan.generator import Generator

    for net, module, prefix, conv in (("g", Generator(cfg.generator), runs.G_OPTIM, O.convert_g_key),
                                      ("d", Discriminator(cfg.discriminator, cfg.generator.patch_size), runs.D_OPTIM,
                                       O.convert_d_key)):
        ours = [n for n, _ in module.named_parameters()]
        ph = "PL" if net == "g" else "R1"
        seen = set()
        for name in recorded_order(outputs, net):
            j = ours.index(conv(name))
            want = O.squeeze_leading(name, outputs[f"{ph}/adam_exp_avg_sq/{net}.{name}"]).float()
            assert torch.equal(tensors[f"{prefix}{j}.exp_avg_sq"], want), name
            assert float(tensors[f"{prefix}{j}.step"]) == 2.0
            seen.add(j)
        assert seen == set(range(len(ours)))  # every parameter of ours has its Adam state


@pytest.mark.parametrize("net", ["g", "d"])
def test_a_partial_adam_state_is_refused(their, outputs, tmp_path, capsys, net):
    """Adam state for some parameters but not all (a truncated or edited file): one line, exit 2,
    no run; an empty state (a fresh optimizer) is accepted."""
    from infinitygan.errors import UserError

    obj = with_adam_state(their, outputs)
    names = independent_order(outputs, net)
    dropped = names.index(next(n for n in names if n.endswith("bias")))
    del obj[f"{net}_optim"]["state"][dropped]
    path = tmp_path / "partial.pth.tar"
    torch.save(obj, path)
    with pytest.raises(UserError, match=f"'{net}_optim' holds Adam state for {len(names) - 2 if net == 'g' else len(names) - 1} of"):
        official_training_state(path, TrainingConfig(batch_size=4))
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--init-from", path, "--data", "procedural", "--out", out,
                         "--iterations", 100, "--workers", 0, "--quiet")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "refusing a partial optimizer state" in lines[0], err
    assert not out.exists()
    obj[f"{net}_optim"]["state"] = {}
    torch.save(obj, path)
    official_training_state(path, TrainingConfig(batch_size=4))  # fresh: fine


def test_import_maps_every_tensor_and_adam_slot(their, outputs, tmp_path):
    path = tmp_path / "theirs.pth.tar"
    obj = with_adam_state(their, outputs)
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
        names = independent_order(outputs, net)
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
