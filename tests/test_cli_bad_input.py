"""Hostile command lines found by a fuzzing run (issue 17): each is refused before any work with
one line on stderr and exit status 2, and leaves nothing behind."""
from __future__ import annotations

import pytest

from infinitygan.cli import main

HUGE = "99999999999999999999999"

CASES = [
    (["init", "--seed", HUGE, "--out", "m.safetensors"], "seed"),
    (["generate", "--style", f"2@{HUGE},2", "--out", "o.png"], "point"),
    (["generate", "--resample", f"0,0,{HUGE},16@3", "--out", "o.png"], "resampled region"),
    (["generate", "--cyclic", "1" + "0" * 25, "--out", "o.png"], "cyclic period"),
    (["generate", "--fusion-kernel", "2147483647", "--style", "1@0,0", "--out", "o.png"], "fusion kernel"),
    (["generate", "--max-memory", "inf", "--out", "o.png"], "--max-memory"),
    (["generate", "--tile", HUGE, "--out", "o.png"], "--tile"),
    (["invert", "p.png", "--lr", "nan", "--out", "l.safetensors"], "--lr"),
    (["invert", "p.png", "--pixel-weight", "nan", "--out", "l.safetensors"], "--pixel-weight"),
    (["invert", "p.png", "--w-samples", "1000000000", "--out", "l.safetensors"], "--w-samples"),
    (["invert", "big.png", "--out", "l.safetensors"], "megapixels"),
    (["bench", "--width", "2147483647"], "--width"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--width", "8192", "--height", "8192", "--modes", "one_shot", "--model", "paper.safetensors"],
     "one-shot"),
    (["pan", "--width", "2147483646", "--out", "v.mp4"], "frame sides"),
    (["pan", "--height", "100000", "--out", "v.mp4"], "frame sides"),
    (["prepare", ".", "--out", "d.lmdb", "--full-size", "100000"], "--full-size"),
    (["train", "--workers", "100000", "--out", "run"], "--workers"),
    (["eval", "--num", "100000000000"], "--num"),
    (["eval", "--scale", "1000"], "--scale"),
    # refused before the inversion runs (it used to invert, then refuse the oversized JPEG)
    (["outpaint", "p.png", "--width", "9000", "--height", "9000", "--out", "o.jpg"], "JPEG"),
    (["train", "--batch", "100000", "--out", "run"], "batch_size"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a tiny photo, a 3000x3000 one (header checked before decoding) and a
    paper-101-sized model file (for the one-shot memory estimate)."""
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "p.png")
    Image.fromarray(np.zeros((3000, 3000), np.uint8)).save(d / "big.png")
    assert main(["init", "--preset", "paper-101", "--out", str(d / "paper.safetensors")]) == 0
    return d


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a[:3])[:40] for a, _ in CASES])
def test_refused_in_one_line(workdir, monkeypatch, capsys, args, needle):
    if args[0] == "pan":
        pytest.importorskip("av")
    monkeypatch.chdir(workdir)
    before = sorted(p.name for p in workdir.iterdir())
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("infinitygan: error:") and needle in err[0], err
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written, no temp files


from pathlib import Path

TINY = Path(__file__).resolve().parents[1] / "infinitygan" / "configs" / "tiny.yaml"
CONFIG_CASES = [
    ("training:\n  lr: fast\n", "training.lr"),
    ("training:\n  lr: -1\n", "training.lr"),
    ("generator:\n  zg_dim: 0\n", "generator.zg_dim"),
    ("generator:\n  zg_dim: 100000000\n", "generator.zg_dim"),
    ("training:\n  ema_decay: .nan\n", "training.ema_decay"),
    ("training:\n  batch_size: 100000\n", "training.batch_size"),
]


@pytest.mark.parametrize("change,needle", CONFIG_CASES)
def test_bad_config_values_are_refused_before_a_run_exists(tmp_path, monkeypatch, capsys, change, needle):
    """A preset file with one value made bad: `train --config` refuses it in one line and leaves
    no run directory (it used to raise TypeError / ZeroDivisionError or train NaNs)."""
    import yaml

    base = yaml.safe_load(TINY.read_text())
    for section, values in yaml.safe_load(change).items():
        base[section].update(values)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(base))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(cfg), "--out", "run", "--iterations", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content,needle", [(b"\xff\xfe\x00garbage\x9c", "cannot parse"), (b"- 1\n- 2\n", "mapping"),
                                            (b"training:\n  lr: 0.001\n", "no generator section")])
def test_bad_config_and_scene_files(tmp_path, monkeypatch, capsys, content, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_bytes(content)
    assert main(["train", "--config", "c.yaml", "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert main(["generate", "--scene", "c.yaml", "--out", "o.png", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("infinitygan: error:"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("damage", ["nan", "missing", "reshaped"])
def test_info_refuses_what_generate_refuses(tmp_path, capsys, tiny_model_file, damage):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_model_file), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() >= 2)
    if damage == "nan":
        state[name] = state[name].clone()
        state[name].view(-1)[0] = float("nan")
    elif damage == "missing":
        del state[name]
    else:
        state[name] = state[name].reshape(-1)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    for cmd in (["info", str(bad)], ["generate", "--model", str(bad), "--out", str(tmp_path / "o.png")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("infinitygan: error:"), (cmd, err)
        if damage == "reshaped":
            assert "of another shape" in err[0] and "missing" not in err[0], err


def test_a_full_disk_is_one_line_and_replaces_nothing(tmp_path, monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--out", "m.safetensors"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the disk full" in err[0], err
    assert list(tmp_path.iterdir()) == []


class _NotATensor:
    pass


def test_a_pickled_inception_file_is_refused_without_torchs_advice(tmp_path):
    import torch

    from infinitygan.errors import UserError
    from infinitygan.metrics.inception import _read_state_dict

    torch.save({"w": torch.zeros(2), "obj": _NotATensor()}, tmp_path / "inception.pth")
    with pytest.raises(UserError) as e:
        _read_state_dict(tmp_path / "inception.pth")
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg and "nothing in it was unpickled" in msg
