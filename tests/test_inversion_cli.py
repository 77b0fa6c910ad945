"""CLI of the inversion room: invert, outpaint, generate --latents; bad input -> one line, exit 2."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from infinitygan.cli import main

QUICK = ("--steps", 3, "--w-samples", 200, "--quiet")


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def photo(tiny_model, tmp_path_factory):
    """A 48x32 PNG made by the tiny model (seed 4) and its canvas placement."""
    from infinitygan.io.images import to_uint8

    region = tiny_model.region(48, 32)
    img = tiny_model.generate(4, 48, 32, region.x, region.y)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(to_uint8(np.tanh(img))).save(path)
    return path, region


@pytest.fixture(scope="module")
def latents_file(photo, tiny_model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("lat") / "photo.safetensors"
    rc = main([str(a) for a in ("invert", photo[0], "--model", tiny_model_file, *QUICK, "--out", out)])
    assert rc == 0
    return out


def test_invert_then_generate_and_outpaint(tmp_path, capsys, tiny_model_file, tiny_model, photo, latents_file):
    from infinitygan.inversion import Inversion, load_latents

    lat = load_latents(latents_file, tiny_model)
    assert lat.region == photo[1] and lat.options["steps"] == 3
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert run(capsys, "generate", "--model", tiny_model_file, "--latents", latents_file, "--seed", 3,
               "--out", a, "--quiet")[0] == 0
    assert run(capsys, "generate", "--model", tiny_model_file, "--latents", latents_file, "--seed", 4,
               "--tile", 16, "--out", b, "--quiet")[0] == 0
    want = Inversion(tiny_model).render(lat, 0)
    assert np.abs(np.load(a) - want).max() <= 1e-5 and np.abs(np.load(b) - want).max() <= 1e-5
    o1, o2 = tmp_path / "o1.npy", tmp_path / "o2.npy"
    for out, seed in ((o1, 1), (o2, 2)):
        rc, _, err = run(capsys, "outpaint", "--latents", latents_file, "--model", tiny_model_file, "--width", 96,
                         "--height", 48, "--seed", seed, "--out", out, "--quiet")
        assert rc == 0, err
    A, B = np.load(o1), np.load(o2)
    assert A.shape == (48, 96, 3) and np.isfinite(A).all()
    assert np.abs(A[8:40, 24:72] - want).max() <= 1e-5 * max(1, np.abs(want).max())  # centred
    assert np.abs(A - B).mean() > 0.01
    # outpainting straight from the photo, with paste-back and saved latents
    o3, sl = tmp_path / "o3.png", tmp_path / "again.safetensors"
    rc, _, err = run(capsys, "outpaint", photo[0], "--model", tiny_model_file, "--width", 80, "--height", 40,
                     "--paste-back", 4, "--save-latents", sl, *QUICK, "--out", o3)
    assert rc == 0, err
    assert Image.open(o3).size == (80, 40) and sl.is_file()


def test_invert_writes_a_preview_and_reports_psnr(tmp_path, capsys, tiny_model_file, photo):
    prev, out = tmp_path / "prev.png", tmp_path / "l.safetensors"
    rc, out_text, err = run(capsys, "invert", photo[0], "--model", tiny_model_file, "--steps", 2, "--w-samples", 200,
                            "--x", 16, "--y", -8, "--preview", prev, "--out", out)
    assert rc == 0, err
    assert "PSNR" in out_text and Image.open(prev).size == (48, 32)


def _bad_cases(tmp_path, photo, latents_file, tiny_model_file):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    small_mask = tmp_path / "mask.png"
    Image.fromarray(np.full((5, 5), 255, np.uint8)).save(small_mask)
    clear = tmp_path / "clear.png"
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(clear)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(latents_file.read_bytes()[:200])
    other_model = tmp_path / "other.safetensors"
    main(["init", "--preset", "tiny", "--seed", "9", "--out", str(other_model)])
    m = ("--model", tiny_model_file)
    return [
        (("invert", tmp_path / "missing.png", *m, *QUICK), "not found"),
        (("invert", empty, *m, *QUICK), "cannot read image"),
        (("invert", junk, *m, *QUICK), "cannot read image"),
        (("invert", photo[0], *m, "--mask", small_mask, *QUICK), "mask"),
        (("invert", clear, *m, *QUICK), "no known pixels"),
        (("outpaint", photo[0], *m, "--width", 20, "--height", 64, *QUICK), "larger than the requested output"),
        (("outpaint", "--latents", latents_file, *m, "--width", 40, "--height", 64, "--quiet"), "larger than"),
        (("outpaint", "--latents", corrupt, *m, "--width", 64, "--height", 64, "--quiet"), "latents file"),
        (("outpaint", "--latents", latents_file, "--model", other_model, "--width", 64, "--height", 64, "--quiet"),
         "another model"),
        (("generate", "--latents", latents_file, "--model", other_model, "--quiet"), "another model"),
        (("outpaint", *m, "--width", 64, "--height", 64, "--quiet"), "PHOTO or --latents"),
        (("invert", photo[0], *m, "--perceptual", "lpips", *QUICK), "LPIPS backbone weights not found"),
    ]


def test_bad_input_one_line_exit_2_and_no_overwrite(tmp_path, capsys, tiny_model_file, photo, latents_file,
                                                    monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no LPIPS weights there
    for args, needle in _bad_cases(tmp_path, photo, latents_file, tiny_model_file):
        ext = ".safetensors" if args[0] == "invert" else ".png"
        out = tmp_path / f"existing{ext}"
        out.write_bytes(b"keep me")
        rc, _, err = run(capsys, *args, "--out", out)
        assert rc == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("infinitygan: error:") and needle in lines[0], (args, err)
        assert out.read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".*part"))


def test_perceptual_auto_warns_once_and_runs(tmp_path, capsys, tiny_model_file, photo, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    rc, _, err = run(capsys, "invert", photo[0], "--model", tiny_model_file, *QUICK,
                     "--out", tmp_path / "l.safetensors")
    assert rc == 0
    assert err.count("warning: LPIPS backbone weights not found") == 1


def test_inbetween_and_cyclic_commands(tmp_path, capsys, tiny_model_file, photo, latents_file):
    out = tmp_path / "between.npy"
    from infinitygan.inversion import load_latents

    rc, _, err = run(capsys, "inbetween", photo[0], latents_file, "--distance", 400, "--model", tiny_model_file,
                     "--seed", 2, "--save-latents", tmp_path / "pair", *QUICK, "--out", out)
    assert rc == 0, err
    lat, left = load_latents(latents_file), load_latents(tmp_path / "pair-left.safetensors")
    assert lat.region.x - (left.region.x + 48) == 400  # LEFT placed 400 pixels left of RIGHT's fixed place
    a = np.load(out)
    assert a.shape == (32, lat.region.x + 48 - left.region.x, 3) and np.isfinite(a).all()
    rc, _, err = run(capsys, "inbetween", photo[0], photo[0], "--model", tiny_model_file, *QUICK, "--out", out)
    assert rc == 2 and "--distance is required" in err
    cyc = tmp_path / "cyc.npy"
    rc, _, err = run(capsys, "outpaint", photo[0], "--model", tiny_model_file, "--cyclic", 512, "--height", 32,
                     *QUICK, "--out", cyc)
    assert rc == 0, err
    c = np.load(cyc)
    assert c.shape == (32, 512, 3)
    rc, _, err = run(capsys, "outpaint", "--latents", latents_file, "--model", tiny_model_file, "--cyclic", 512,
                     "--height", 32, "--quiet", "--out", cyc)
    assert rc == 2 and "not a cyclic inversion" in err
    rc, _, err = run(capsys, "outpaint", photo[0], "--model", tiny_model_file, "--cyclic", 256, "--height", 32,
                     *QUICK, "--out", cyc)
    assert rc == 2 and "shorter than the image's footprint" in err
