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
