"""Scenes from the command line and from files: same pixels everywhere, one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from infinitygan.cli import main
from infinitygan.scene import Box, Mask, Point, Resample, Scene, StyleCentre, render
from infinitygan.scene.cli import parse_resample, parse_style

SMALL = ["--width", "96", "--height", "48", "--tile", "64", "--quiet"]


def run(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def test_one_style_of_the_seed_is_plain_synthesis(tiny_model_file, tmp_path, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert run(capsys, "generate", "--model", tiny_model_file, "--seed", 5, *SMALL, "--out", a)[0] == 0
    assert run(capsys, "generate", "--model", tiny_model_file, "--seed", 5, "--style", "5@30,2", *SMALL,
               "--out", b)[0] == 0
    assert np.array_equal(np.load(a), np.load(b))


def test_cli_scene_file_and_api_agree(tiny_model, tiny_model_file, tmp_path, capsys):
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 6:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.save(tmp_path / "zg.npy", np.linspace(-1, 1, tiny_model.config.generator.zg_dim).astype(np.float32))
    scene = {"seed": 2, "kernel": 31, "region": [-40, -24, 112, 48],
             "centres": [{"seed": 1, "point": [-30, 0]}, {"seed": 3, "point": [60, 0]},
                         {"seed": 4, "box": [0, -20, 30, 20]}, {"zg": "zg.npy", "mask": {"file": "m.png", "x": 30, "y": 0}}],
             "resample": [{"region": [-40, 0, 32, 32], "seed": 9}]}
    (tmp_path / "s.json").write_text(json.dumps(scene))
    yml = tmp_path / "s.yaml"
    yml.write_text("seed: 2\nkernel: 31\nregion: [-40, -24, 112, 48]\ncentres:\n"
                   "  - {seed: 1, point: [-30, 0]}\n  - {seed: 3, point: [60, 0]}\n  - {seed: 4, box: [0, -20, 30, 20]}\n"
                   "  - {zg: zg.npy, mask: {file: m.png, x: 30, y: 0}}\n"
                   "resample:\n  - {region: [-40, 0, 32, 32], seed: 9}\n")
    outs = []
    for f, tile in (("s.json", 64), ("s.yaml", 128)):
        out = tmp_path / f"{f}.npy"
        rc, err = run(capsys, "generate", "--model", tiny_model_file, "--scene", tmp_path / f, "--tile", tile,
                      "--quiet", "--out", out)
        assert rc == 0, err
        outs.append(np.load(out))
    assert outs[0].shape == (48, 112, 3)
    assert np.abs(outs[0] - outs[1]).max() <= 1e-4
    api = render(tiny_model, Scene.load(tmp_path / "s.json"), tile=96, device="cpu")
    assert np.abs(api - outs[0]).max() <= 1e-4
    # the same scene built in Python
    zg = np.load(tmp_path / "zg.npy")
    import torch

    py = Scene(2, [StyleCentre(Point(-30, 0), seed=1), StyleCentre(Point(60, 0), seed=3),
                   StyleCentre(Box(0, -20, 30, 20), seed=4),
                   StyleCentre(Mask(30, 0, mask >= 128), zg=torch.from_numpy(zg))],
               [Resample(-40, 0, 32, 32, 9)], kernel=31)
    assert np.abs(render(tiny_model, py, 112, 48, -40, -24, tile=64) - outs[0]).max() <= 1e-4


def test_cli_style_resample_cyclic_options(tiny_model, tiny_model_file, tmp_path, capsys):
    out = tmp_path / "c.npy"
    rc, err = run(capsys, "generate", "--model", tiny_model_file, "--seed", 1, "--style", "2@-40,2", "--style", "3@40,2",
                  "--resample", "0,-10,20,20@8", "--cyclic", 96, "--fusion-kernel", 15, "--height", 32, "--quiet",
                  "--out", out)
    assert rc == 0, err
    img = np.load(out)
    assert img.shape == (32, 96, 3)  # a cyclic scene defaults to one period
    ref = render(tiny_model, Scene(1, [StyleCentre(Point(-40, 2), seed=2), StyleCentre(Point(40, 2), seed=3)],
                                   [Resample(0, -10, 20, 20, 8)], cyclic=96, kernel=15), height=32, tile=48)
    assert np.abs(img - ref).max() <= 1e-4


def test_parsers():
    c = parse_style("12@-3,40")
    assert c.seed == 12 and c.place == Point(-3, 40)
    r = parse_resample("1,-2,30,40@7")
    assert r == Resample(1, -2, 30, 40, 7)


@pytest.mark.parametrize("content, suffix, args, message", [
    ("seed: 1\ncentres:\n  - {seed: 2}\n", ".yaml", [], "has no place"),
    ("seed: 1\ncentres: []\n", ".yaml", [], "N = 0"),
    ("seed: 1\ncyclic: 100\n", ".yaml", [], "multiple of 16"),
    ("seed: 1\ncentres:\n  - {seed: 2, box: [0, 0, 50, 50]}\n  - {seed: 3, box: [10, 10, 50, 50]}\n", ".yaml", [], "overlap"),
    ("seed: 1\ncentres:\n  - {seed: 2, mask: {file: notimage.png, x: 0, y: 0}}\n", ".yaml", [], "not an image"),
    ("seed: 1\ncentres:\n  - {seed: 2, point: [0, 0], box: [0, 0, 4, 4]}\n", ".yaml", [], "several places"),
    ("{not json", ".json", [], "not valid JSON"),
    ("seed: 1\nwat: 2\n", ".yaml", [], "unknown scene key"),
    ("seed: 1\ncentres:\n  - {zg: z.npy, point: [0, 0]}\n", ".yaml", [], "zg"),
    ("seed: 1\n", ".yaml", ["--style", "3@0,0"], "do not combine"),
])
def test_bad_scene_input_is_one_line_exit_2(tiny_model_file, tmp_path, capsys, content, suffix, args, message):
    (tmp_path / "notimage.png").write_text("hello")
    np.save(tmp_path / "z.npy", np.zeros(5, np.float32))  # wrong zg_dim
    f = tmp_path / f"scene{suffix}"
    f.write_text(content)
    rc, err = run(capsys, "generate", "--model", tiny_model_file, "--scene", f, *args, *SMALL, "--out",
                  tmp_path / "x.png")
    assert rc == 2
    assert err.startswith("infinitygan: error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--style", "3@a,b"], "SEED@X,Y"),
    (["--resample", "1,2,3@4"], "X,Y,W,H@SEED"),
    (["--cyclic", "40"], "multiple of 16"),
    (["--cyclic", "0"], "multiple of 16"),
    (["--style", "3@0,0", "--style", "4@0,0"], "same point"),
    (["--style", "3@0,0", "--fusion-kernel", "10"], "odd"),
])
def test_bad_options_are_one_line_exit_2(tiny_model_file, tmp_path, capsys, args, message):
    rc, err = run(capsys, "generate", "--model", tiny_model_file, *args, *SMALL, "--out", tmp_path / "x.png")
    assert rc == 2
    assert err.startswith("infinitygan: error:") and err.count("\n") == 1 and message in err, err
