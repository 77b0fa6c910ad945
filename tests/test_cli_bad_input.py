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


# ------------------------------------------------------------------- issue 31: hostile input
def _refused(capsys, args, needle: str | None = None) -> str:
    """``args`` end with exit status 2 and exactly one line on stderr (containing ``needle``)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("infinitygan: error:"), (rc, err)
    assert needle is None or needle in err[0], err
    return err[0]


def _bomb(key: str, indent: int = 0, levels: int = 6, width: int = 10) -> str:
    """``key:`` a list whose aliases expand to width ** levels values (10^6 here: 8 MB of repr if a
    regression let it reach a message, never gigabytes), nested in a real field as the hostile
    run had it (top-level anchors were refused as unknown keys before anything expanded)."""
    pad = " " * indent
    rows = [f"{pad}  - &a0 [" + ", ".join(["x"] * width) + "]"]
    rows += [f"{pad}  - &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return f"{pad}{key}:\n" + "\n".join(rows) + "\n"


def test_yaml_alias_bombs_are_refused_before_expansion(tmp_path, monkeypatch, capsys):
    """A config, a scene, a run's config.yaml and a campaign.yaml whose anchors expand a few
    hundred bytes to millions of values: refused while composing (never built nor printed)."""
    monkeypatch.chdir(tmp_path)
    assert len(_bomb("seed")) < 600
    (tmp_path / "c.yaml").write_text("generator:\n" + _bomb("zg_dim", 2))
    for args in (["init", "--preset", "c.yaml", "--out", "m.safetensors"],
                 ["train", "--config", "c.yaml", "--out", "run", "--quiet"]):
        _refused(capsys, args, "anchors and aliases")
    (tmp_path / "s.yaml").write_text(_bomb("seed"))
    _refused(capsys, ["generate", "--scene", "s.yaml", "--out", "o.png"], "anchors and aliases")
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(_bomb("name"))
    _refused(capsys, ["train", "--out", run, "--resume", "--quiet"], "anchors and aliases")
    (tmp_path / "campaigns" / "c").mkdir(parents=True)
    (tmp_path / "campaigns" / "c" / "campaign.yaml").write_text(_bomb("name"))
    _refused(capsys, ["campaign", "status", "c"], "anchors and aliases")
    (tmp_path / "r.yaml").write_text("generator: &a {zg_dim: [*a]}\n")  # an alias inside itself
    _refused(capsys, ["init", "--preset", "r.yaml", "--out", "m.safetensors"], "recursive")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "campaigns", "old", "r.yaml", "s.yaml"]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_a_few_aliases_still_load(tmp_path):
    from infinitygan.io import safe_yaml

    assert safe_yaml.load("a: &x [1, 2]\nb: *x\nc: {<<: {k: 1}}\n") == {"a": [1, 2], "b": [1, 2], "c": {"k": 1}}


def test_messages_show_a_value_cut_short(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("generator: {zg_dim: [" + ", ".join(["123456"] * 5000) + "]}\n")
    line = _refused(capsys, ["init", "--preset", "c.yaml", "--out", "m.safetensors"], "generator.zg_dim")
    assert len(line) < 200 and "..." in line
    (tmp_path / "c.yaml").write_text("generator: {zg_dim: " + "9" * 5000 + "}\n")  # beyond int's digit limit
    assert len(_refused(capsys, ["init", "--preset", "c.yaml", "--out", "m.safetensors"])) < 200


@pytest.mark.parametrize("where", ["init", "train", "resume"])
def test_a_section_that_is_not_a_mapping(tmp_path, monkeypatch, capsys, where):
    """``generator: [1, 2]`` (also in a run's config.yaml on --resume): one line, not an
    AttributeError."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("generator: [1, 2]\n")
    if where == "init":
        _refused(capsys, ["init", "--preset", "c.yaml", "--out", "m.safetensors"], "generator must be a mapping")
    elif where == "train":
        _refused(capsys, ["train", "--config", "c.yaml", "--out", "run", "--iterations", "1", "--quiet"],
                 "generator must be a mapping")
        assert not (tmp_path / "run").exists()
    else:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.yaml").write_text("generator: [1, 2]\n")
        _refused(capsys, ["train", "--out", "run", "--resume", "--quiet"], "generator must be a mapping")


def _png_header(path, width: int, height: int) -> None:
    """A 57-byte PNG (header, an empty data chunk, the end) that promises width x height pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [60000, 10000])  # beyond Pillow's bomb limit; beyond its warning's and ours
def test_a_scene_mask_of_60000_squared_pixels_is_refused_from_its_header(tmp_path, monkeypatch, capsys, side):
    monkeypatch.chdir(tmp_path)
    _png_header(tmp_path / "m.png", side, side)
    (tmp_path / "s.yaml").write_text("centres:\n  - {seed: 1, mask: {file: m.png, x: 0, y: 0}}\n")
    _refused(capsys, ["generate", "--scene", "s.yaml", "--out", "o.png"], "megapixels")
    assert not (tmp_path / "o.png").exists()


def test_model_files_that_are_not_files(tmp_path, capsys, tiny_model_file):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block forever
    for target in ("/dev/null", "/dev/zero", fifo):
        _refused(capsys, ["info", target], "not a regular file")
        _refused(capsys, ["generate", "--model", target, "--out", tmp_path / "o.png"], "not a regular file")
    # a truncated model whose header length's low byte is 0x80 (the first byte of a pickle)
    data = bytearray(tiny_model_file.read_bytes()[:300])
    data[0], data[1] = 0x80, 0x02
    (tmp_path / "cut.safetensors").write_bytes(bytes(data))
    line = _refused(capsys, ["info", tmp_path / "cut.safetensors"], "truncated or corrupt")
    assert "pickle" not in line


def test_an_unreadable_checkpoint_says_permission_denied(tmp_path, monkeypatch, capsys, tiny_model_file):
    """Mode 000 (root reads it anyway, so open is made to refuse as it would for a user)."""
    import builtins
    import shutil

    import infinitygan.io.checkpoint as ck

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(tiny_model_file, tmp_path / "m.safetensors")
    shutil.copy(tiny_model_file, run / "ckpt-00000001.safetensors")

    def no_access(path, *a, **k):
        if str(path).endswith(".safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *a, **k)

    monkeypatch.setattr(ck, "open", no_access, raising=False)
    _refused(capsys, ["info", tmp_path / "m.safetensors"], "permission denied")
    _refused(capsys, ["info", tmp_path / "run"], "permission denied")


def test_an_unreadable_checkpoint_as_a_user(tmp_path, capsys, tiny_model_file):
    import os
    import shutil

    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    shutil.copy(tiny_model_file, tmp_path / "m.safetensors")
    (tmp_path / "m.safetensors").chmod(0)
    _refused(capsys, ["info", tmp_path / "m.safetensors"], "permission denied")


def test_outputs_in_places_that_hold_no_files(tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    _refused(capsys, ["generate", "--out", "/proc/a.png"], "not writable")
    _refused(capsys, ["generate", "--out", tmp_path / "f" / "a.png"], "is a file, not a folder")
    _refused(capsys, ["generate", "--out", tmp_path / "f" / "b" / "a.png"], "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_refused_pickle_is_one_line_without_torch_warnings(tmp_path, capsys):
    import argparse
    import pickle

    with open(tmp_path / "p.pkl", "wb") as f:  # protocol 4: torch.load warns about it
        pickle.dump({"g_ema": argparse.Namespace(a=1)}, f, protocol=4)
    _refused(capsys, ["convert-official", tmp_path / "p.pkl", "--out", tmp_path / "o.safetensors"], "refused")
    assert not (tmp_path / "o.safetensors").exists()


def _as_official(state: dict) -> dict:
    """Our generator state under the authors' g_ema key names and shapes (the converter's inverse)."""
    import re

    out = {}
    for k, v in state.items():
        k = re.sub(r"^mapping\.net\.", "texture_synthesizer.mapping.", k)
        k = re.sub(r"^structure\.layers\.(\d+)\.", r"structure_synthesizer.implicit_model.conv_stack.\1.conv.", k)
        k = re.sub(r"^texture\.(convs|to_rgbs)\.", r"texture_synthesizer.\1.", k)
        out[k] = v[None] if k.endswith("conv.weight") and v.dim() == 4 else v
    return out


def test_convert_official_refuses_nan_weights(tmp_path, capsys, tiny_model):
    """A whole authors' g_ema with one NaN weight converted with exit 0 to a file that `info` and
    `generate` refuse; refused at conversion now. The same state without the NaN converts."""
    import torch

    theirs = _as_official({k: v.clone() for k, v in tiny_model.generator.state_dict().items()})
    torch.save({"g_ema": theirs}, tmp_path / "good.pt")
    assert main(["convert-official", str(tmp_path / "good.pt"), "--out", str(tmp_path / "good.safetensors")]) == 0
    theirs["texture_synthesizer.mapping.1.weight"][0, 0] = float("nan")
    torch.save({"g_ema": theirs}, tmp_path / "nan.pt")
    _refused(capsys, ["convert-official", tmp_path / "nan.pt", "--out", tmp_path / "o.safetensors"], "NaN")
    assert not (tmp_path / "o.safetensors").exists()


def test_text_files_as_inception_weights(tmp_path, monkeypatch, capsys, tiny_model_file):
    monkeypatch.chdir(tmp_path)
    for name in ("w.pth", "w.safetensors"):
        (tmp_path / name).write_text("these are not weights\n")
        _refused(capsys, ["eval", "--metric", "fid", "--model", tiny_model_file, "--num", 2,
                          "--inception-weights", name], "Inception weights")


@pytest.mark.parametrize("manifest", ["[1, 2]", '{"format": "infinitygan-export", "format_version": 1}',
                                      '{"format": "infinitygan-export", "format_version": 1, "graphs": {"mapping": '
                                      '{"file": "m.onnx"}, "structure": {"file": "s.onnx"}, "texture": {"file": '
                                      '"t.onnx"}}, "latents": {"zg_dim": "many"}}'])
def test_a_malformed_export_manifest(tmp_path, capsys, manifest):
    pytest.importorskip("onnxruntime")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "manifest.json").write_text(manifest)
    _refused(capsys, ["generate", "--runtime", "onnx", "--model", tmp_path / "exp", "--out", tmp_path / "o.png"],
             "manifest.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


@pytest.fixture(scope="module")
def tiny_latents(tiny_model_file, tmp_path_factory):
    """A latents file of a 32x32 photo (a 2-step inversion)."""
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("lat")
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(d / "p.png")
    assert main([str(a) for a in ("invert", d / "p.png", "--model", tiny_model_file, "--steps", 2, "--w-samples",
                                  20, "--quiet", "--out", d / "p.safetensors")]) == 0
    return d / "p.safetensors"


@pytest.mark.parametrize("period", ['"-5"', "-5", "5.5", "true", "1e400", "999999999999"])
def test_a_latents_file_with_a_bad_period(tmp_path, capsys, tiny_model_file, tiny_latents, period):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_latents), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["period"] = period
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    _refused(capsys, ["generate", "--model", tiny_model_file, "--latents", tmp_path / "bad.safetensors",
                      "--out", tmp_path / "o.png"], "cyclic period")
    assert not (tmp_path / "o.png").exists()


def test_outpaint_never_advises_an_invalid_period(tmp_path, capsys, tiny_model_file, tiny_latents):
    line = _refused(capsys, ["outpaint", "--latents", tiny_latents, "--model", tiny_model_file, "--cyclic", 15,
                             "--height", 32, "--out", tmp_path / "o.png"], "multiple of 16")
    assert "invert with --cyclic 15" not in line


# ------------------------------------------------------------- work sized by the input, refused first
# Each case asks for a little more than a small INFINITYGAN_MEMORY_MB limit (never for gigabytes), so
# that a regression costs this test run seconds and megabytes, not the machine. The 8192-wide
# cases themselves are replayed by tools/hostile_inputs.py, under an address-space limit.
PAPER_101 = {"zg_dim": 512, "zl_dim": 256, "style_dim": 512, "mapping_layers": 8, "gs_channels": 256,
             "ts_channels": [512] * 8}


def test_a_small_model_file_declaring_wide_layers_builds_nothing(tmp_path, capsys, tiny_model_file, monkeypatch):
    """A 1.7 MB file whose config declares wider layers than its tensors (8192-wide in the hostile
    run: 78 GB of generator): `info` and `generate` compare shapes on the meta device and refuse;
    no generator is built for real."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    import infinitygan.api as api

    with safe_open(str(tiny_model_file), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["generator"].update(PAPER_101)
    meta["config"] = json.dumps(cfg)
    save_file(state, str(tmp_path / "wide.safetensors"), metadata=meta)
    built = []
    real = api.build_generator
    monkeypatch.setattr(api, "build_generator", lambda c: built.append(str(torch.get_default_device())) or real(c))
    for args in (["info", tmp_path / "wide.safetensors"],
                 ["generate", "--model", tmp_path / "wide.safetensors", "--out", tmp_path / "o.png"]):
        _refused(capsys, args, "do not match its config")
    assert built and set(built) == {"meta"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.safetensors"]


def test_a_config_whose_model_does_not_fit_in_memory(tmp_path, monkeypatch, capsys):
    """`init` and `train` count the parameters on the meta device and compare them with the
    memory available (here a 100 MB limit against paper-101's 145 MB generator)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "100")
    line = _refused(capsys, ["init", "--preset", "paper-101", "--out", "m.safetensors"], "100.0 MB available")
    assert "36.4 M parameters" in line and "narrow its layers" in line
    # the weights, one image per loading thread and the process itself (1 GB): over 100 MB even for tiny
    _refused(capsys, ["train", "--preset", "tiny", "--iterations", "1", "--out", "run", "--quiet"], "needs about")
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "2000")  # paper-101's G and D with gradients and Adam: 1.2 GB
    _refused(capsys, ["train", "--preset", "paper-101", "--iterations", "1", "--batch", "4", "--out", "run",
                      "--quiet"], "narrow its layers")
    assert list(tmp_path.iterdir()) == []


def test_a_training_full_size_whose_images_do_not_fit(tmp_path, monkeypatch, capsys):
    """Procedural images of full_size F take ~150 bytes a pixel while rendered: F = 1024 against a
    1.1 GB limit is refused before the run directory exists (8192 was 10 GB per image)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "1100")
    _refused(capsys, ["train", "--set", "full_size=1024", "--iterations", "1", "--out", "run", "--quiet"],
             "1024x1024")
    assert list(tmp_path.iterdir()) == []


def test_reading_a_model_file_larger_than_memory(tmp_path, monkeypatch, capsys, tiny_model_file):
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "0.5")  # the tiny model's file is 1.7 MB
    _refused(capsys, ["info", tiny_model_file], "0.5 MB available")


def test_the_png_writers_row_is_checked_before_any_work(tmp_path, monkeypatch):
    """`generate --height 16 --width 2147483647 --force` held 16 rows of 6 GB each."""
    from infinitygan.errors import UserError
    from infinitygan.io.images import check_output

    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "1000")
    with pytest.raises(UserError, match="PNG writer's row") as e:
        check_output(tmp_path / "a.png", 2 ** 31 - 1, 16, force=True)
    assert "1,000.0 MB available" in str(e.value)
    check_output(tmp_path / "a.tif", 2 ** 31 - 1, 16, force=True)  # tiled: no whole rows held
    with pytest.raises(UserError, match="PNG holds at most"):
        check_output(tmp_path / "a.png", 2 ** 31, 16, force=True)
    assert list(tmp_path.iterdir()) == []


def test_a_tile_and_batch_beyond_memory_are_refused_by_the_planner(tiny_model):
    """A 16384-pixel tile at batch 1024 (295 GB for the tiny model) is refused when planned:
    nothing is allocated (the planner holds no tensors)."""
    from infinitygan.errors import UserError
    from infinitygan.planning import Planner
    from infinitygan.tiling import Region

    g = tiny_model.generator
    planner = Planner(g.geometry, tiny_model.config.generator, "cpu", 4, limit_bytes=8 * 2 ** 30)
    with pytest.raises(UserError, match="tiles of 16384x16384 pixels at batch 1024 need at least"):
        planner.plan(Region(0, 0, 65536, 16384), tile=16384, batch=1024)
    planner.plan(Region(0, 0, 64, 64), tile=16384, batch=1024)  # the tile shrinks to the region: fits
    planner.plan(Region(0, 0, 65536, 16384))  # the default tile fits the budget


def test_generate_refuses_a_tile_and_batch_beyond_memory(tmp_path, monkeypatch, capsys, tiny_model_file):
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "100")
    _refused(capsys, ["generate", "--model", tiny_model_file, "--width", 2048, "--height", 512, "--tile", 512,
                      "--batch", 4, "--out", tmp_path / "o.tif"], "at batch 4 need at least")
    assert list(tmp_path.iterdir()) == []
