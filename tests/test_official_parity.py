"""Parity with the authors' implementation, on the fixture their code produced.

The fixture folder comes from $INFINITYGAN_OFFICIAL_FIXTURE (default ../shared/fixtures/official);
every width, batch size and position is read from its files, so other fixtures made the same
way pass the same tests. A missing fixture skips its tests, or fails them under CI /
INFINITYGAN_REQUIRE_FIXTURES=1 (``conftest.official_fixture``). The format tests at the end
(full training checkpoints, malicious pickles) do not need the fixture.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from infinitygan.coords import HORIZON_ROW, canvas_coords, official_test_grid
from infinitygan.latents import Canvas
from infinitygan.nn import blur_kernel_121
from infinitygan.cli import main
from infinitygan.errors import UserError
from infinitygan.official.checkpoint import generator_from_official_state, infer_config, load_official
from infinitygan.synthesis import Region, Synthesizer

from conftest import official_fixture

TOL32 = 1e-4


@pytest.fixture(scope="module")
def cases():
    return torch.load(official_fixture("official_tiny_cases.pt"), weights_only=True)


@pytest.fixture(scope="module")
def official():
    return load_official(official_fixture("official_tiny_g_ema.pth.tar"))


@pytest.fixture(scope="module")
def official_g_ema():
    return torch.load(official_fixture("official_tiny_g_ema.pth.tar"), weights_only=True)["g_ema"]


def _noises(cases, prefix, dtype):
    n = len([k for k in cases if k.startswith(f"{prefix}_noise_")])
    return [cases[f"{prefix}_noise_{i}"].to(dtype) for i in range(n)]


def _run(gen, cases, prefix, dtype, **kw):
    with torch.no_grad():
        return gen(cases[f"{prefix}_global_latent"][:, 0].to(dtype), cases[f"{prefix}_local_latent"].to(dtype),
                   cases[f"{prefix}_coords"].to(dtype), noises=_noises(cases, prefix, dtype), **kw)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, TOL32), (torch.float64, 1e-10)])
def test_single_patch_case_a(official, cases, dtype, tol):
    gen = official[0].to(dtype)
    out = _run(gen, cases, "A", dtype)
    assert (out["zs"] - cases["A_structure_latent"]).abs().max() <= tol
    assert (out["rgb"] - cases["A_gen"]).abs().max() <= tol
    w = gen.mapping(cases["A_global_latent"][:, 0].to(dtype))
    assert (w - cases["A_w"]).abs().max() <= tol


@pytest.mark.parametrize("dtype,tol", [(torch.float32, TOL32), (torch.float64, 1e-10)])
def test_style_mixing_case_amix(official, cases, dtype, tol):
    gen = official[0].to(dtype)
    zg = cases["Amix_global_latent"].to(dtype)
    k = int(cases["Amix_inject_index"])
    assert (gen.styles(zg[:, 0], zg[:, 1], k) - cases["Amix_styles_wplus"]).abs().max() <= tol
    with torch.no_grad():
        out = gen(zg[:, 0], cases["A_local_latent"].to(dtype), cases["A_coords"].to(dtype),
                  noises=_noises(cases, "A", dtype), zg_mix=zg[:, 1], mix_index=k)
    assert (out["rgb"] - cases["Amix_gen"]).abs().max() <= tol
    assert (out["zs"] - cases["Amix_structure_latent"]).abs().max() <= tol


@pytest.mark.parametrize("dtype,tol", [(torch.float32, TOL32), (torch.float64, 1e-10)])
def test_one_shot_case_b(official, cases, dtype, tol):
    out = _run(official[0].to(dtype), cases, "B", dtype)
    assert (out["zs"] - cases["B_structure_latent"]).abs().max() <= tol
    assert (out["rgb"] - cases["B_gen"]).abs().max() <= tol


def test_patch_composition_case_c(official, cases):
    """Patch by patch with the fixture's slicing tables, exactly as the authors' manager did."""
    gen = official[0].float()
    zg = cases["C_global_latent"][:, 0]
    zl, coords = cases["C_local_latent"], cases["C_meta_coords"]
    noises = _noises(cases, "C", torch.float32)
    table, starts = cases["C_patch_table"], cases["C_patch_noise_starts"]
    m = gen.geometry.gs_margin
    n_patch = gen.cfg.ts_input
    z_len = n_patch + 2 * m
    sizes = gen.geometry.ts_sizes(n_patch)
    P = gen.geometry.ts_output_size(n_patch)
    canvas = torch.zeros_like(cases["C_canvas"], dtype=torch.float32)
    with torch.no_grad():
        for row, st in zip(table.tolist(), starts.tolist()):
            _, _, zx, zy, ix, iy = row
            sl = (..., slice(zx, zx + z_len), slice(zy, zy + z_len))
            nz = [noises[i][..., a: a + sizes[i], b: b + sizes[i]] for i, (a, b) in enumerate(st)]
            out = gen(zg, zl[sl], coords[sl], noises=nz)["rgb"]
            canvas[..., ix: ix + P, iy: iy + P] = out
        assert (canvas - cases["C_canvas"]).abs().max() <= TOL32
        one = gen(zg, zl, coords, noises=noises)
    assert (one["rgb"] - cases["C_canvas"]).abs().max() <= TOL32
    assert (one["zs"] - cases["C_structure_latent_oneshot"]).abs().max() <= TOL32


@pytest.mark.parametrize("tile", [None, 96, 160])
def test_engine_reproduces_authors_canvas(official, cases, tile):
    """Our tiling engine, fed the fixture's latents and noises through canvas overrides at the
    positions our coordinate system assigns them, reproduces the authors' composed canvas."""
    gen, cfg = official
    g = gen.geometry
    zl = cases["C_local_latent"][0]
    H, W = zl.shape[-2:]
    # the authors centre their vertical axis on the canvas: row i has half-step 2i - (H - 1);
    # ours puts half-step 2 (r - HORIZON_ROW) on canvas row r.
    assert (H - 1) % 2 == 0
    r0 = HORIZON_ROW - (H - 1) // 2
    c0 = 0
    ours = canvas_coords(cfg.generator.coords, r0, H, c0, W)
    assert (ours - cases["C_meta_coords"][0]).abs().max() <= 1e-6
    canvas = Canvas(0, cfg.generator.zg_dim, cfg.generator.zl_dim,
                    global_latent=cases["C_global_latent"][0, 0])
    canvas.override_zl(r0, c0, zl)
    m = g.gs_margin
    s_row, s_col, n = r0 + m, c0 + m, H - 2 * m
    for j, ((ya, _), (xa, _)) in enumerate(zip(g.ts_ranges(s_row, n), g.ts_ranges(s_col, n))):
        canvas.override_noise(j, ya, xa, cases[f"C_noise_{j}"][0])
    (py, _), (px, _) = g.pixel_range(s_row, n), g.pixel_range(s_col, n)
    P = g.ts_output_size(n)
    synth = Synthesizer(gen.float(), "cpu")
    img = synth.render(canvas, Region(px, py, P, P), tile=tile, batch=3)
    ref = cases["C_canvas"][0].permute(1, 2, 0).numpy()
    assert np.abs(img - ref).max() <= TOL32


def test_coordinate_grids_match(official, cases):
    cfg = official[1].generator.coords
    for prefix in ("A", "B"):
        c = cases[f"{prefix}_coords"][0]
        init = tuple(cases["A_coord_init"].tolist()) if prefix == "A" else (0, 0)
        ours = official_test_grid(cfg, c.shape[-2], c.shape[-1], init)
        assert (ours - c).abs().max() <= 1e-6
    c = cases["C_meta_coords"][0]
    assert (official_test_grid(cfg, c.shape[-2], c.shape[-1]) - c).abs().max() <= 1e-6


def test_full_size_listing_loads_into_paper_101(tmp_path):
    """A checkpoint with the authors' full-size key listing loads into paper-101 and generates."""
    from infinitygan.config import load_config

    listing = json.loads(official_fixture("g_ema_keys_full.json").read_text())
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape, _ in listing["keys"]}
    for k in state:
        if k.endswith("kernel"):  # blur buffers hold the [1,2,1] kernel in real checkpoints
            state[k] = blur_kernel_121()
    cfg = infer_config(state)
    paper = load_config("paper-101").generator
    for f in ("zg_dim", "zl_dim", "style_dim", "mapping_layers", "gs_layers", "gs_kernel", "gs_channels", "n_up",
              "ts_channels"):
        assert getattr(cfg.generator, f) == getattr(paper, f), f
    path = tmp_path / "full.pt"
    torch.save({"iter": torch.tensor(1), "g_ema": state}, path)
    gen, cfg2 = load_official(path)
    synth = Synthesizer(gen, "cpu")
    img = synth.render(Canvas(1, 512, 256), Region(0, 0, 24, 20))
    assert img.shape == (20, 24, 3) and np.isfinite(img).all()


def test_unexpected_and_missing_keys_reported(official_g_ema):
    state = official_g_ema
    cfg = infer_config(state)
    extra = dict(state, **{"texture_synthesizer.bogus.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="unexpected key"):
        generator_from_official_state(extra, cfg)
    fewer = {k: v for k, v in state.items() if "to_rgbs.2.bias" not in k}
    with pytest.raises(UserError, match="lacks"):
        generator_from_official_state(fewer, cfg)


# ------------------------------------------------------------------ the authors' file format
def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_full_training_checkpoint_converts_like_g_ema_alone(official_g_ema, tmp_path, capsys):
    """Their train.py's whole dict (numpy float64 best_fid, optimizers, D) converts to exactly
    what a file holding g_ema alone converts to, and the rest is reported."""
    g_ema = official_g_ema
    full = {"iter": 123456, "best_fid": np.float64(17.25), "g": g_ema, "d": {"w": torch.zeros(2)},
            "g_ema": g_ema, "g_optim": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                                       "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}]},
            "d_optim": {"state": {}, "param_groups": []}, "mean_path_lengths": torch.tensor([0.5])}
    torch.save(full, tmp_path / "full.pt")
    torch.save({"g_ema": g_ema}, tmp_path / "alone.pt")
    rc, out, err = run_cli(capsys, "convert-official", tmp_path / "full.pt", "--out", tmp_path / "full.safetensors")
    assert rc == 0, err
    assert "iteration 123456" in out and "best FID 17.25" in out
    for k in ("d", "d_optim", "g", "g_optim", "mean_path_lengths"):
        assert k in out.splitlines()[-1]
    assert run_cli(capsys, "convert-official", tmp_path / "alone.pt", "--out", tmp_path / "alone.safetensors")[0] == 0
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "alone.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _RunsAShell:
    """A pickle whose loading would call os.system (the classic malicious checkpoint)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["g_ema", "best_fid"])
def test_malicious_pickle_is_refused(tmp_path, capsys, where):
    marker = tmp_path / "pwned"
    obj = {"iter": 1, "best_fid": np.float64(3.0), "g_ema": {"texture_synthesizer.x": torch.zeros(1)}}
    obj[where] = _RunsAShell(marker)
    path = tmp_path / "evil.pth.tar"
    torch.save(obj, path)
    rc, _, err = run_cli(capsys, "convert-official", path, "--out", tmp_path / "out.safetensors")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "refused" in lines[0] and "could run arbitrary code" in lines[0]
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_other_pickled_objects_are_refused(tmp_path):
    import argparse

    path = tmp_path / "ns.pt"
    torch.save({"g_ema": argparse.Namespace(a=1)}, path)
    with pytest.raises(UserError, match=r"refused .*argparse\.Namespace.*could run arbitrary code"):
        load_official(path)


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"g_ema": {"texture_synthesizer.w": torch.zeros(100)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="truncated or another format"):
        load_official(path)
    torch.save({"weights": {"a": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="no 'g_ema' generator"):
        load_official(path)
