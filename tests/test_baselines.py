"""Ablation baselines of paper Table 1: trained by the same loop, generated at any size."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import infinitygan as ig
from infinitygan.config import load_config
from infinitygan.training.loop import train
from infinitygan.training.options import RunOptions

BASE = {
    "generator": {"zg_dim": 16, "zl_dim": 8, "style_dim": 16, "mapping_layers": 2, "gs_layers": 0,
                  "gs_channels": 8, "n_up": 2, "ts_channels": [16, 16, 8, 8], "coords": {"system": "object"}},
    "discriminator": {"channels": [8, 16, 16, 16], "mbstd_group": 2},
    "training": {"batch_size": 4, "full_size": 33, "pre_resize": None, "checkpoint_every": 2, "sample_every": 100,
                 "log_every": 1, "r1_every": 2, "pl_every": 2, "diversity_weight": 0.0},
}


@pytest.mark.parametrize("arch,ts_input,patch", [("stylegan2-nci", 6, 24), ("stylegan2-nci-pfg", 8, 17)])
def test_baseline_trains_and_generates(tmp_path, arch, ts_input, patch):
    d = json.loads(json.dumps(BASE))
    d["name"] = arch
    d["generator"].update(arch=arch, ts_input=ts_input)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(d))
    cfg = load_config(path)
    assert cfg.generator.patch_size == patch
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = train(cfg.with_training(iterations=3), "procedural", tmp_path / "run",
                    options=RunOptions(device="cpu", workers=0, quiet=True, samples=False))
    finally:
        torch.set_num_threads(prev)
    assert res["iteration"] == 3
    model = ig.load_model(tmp_path / "run")
    img = model.generate(seed=1, width=90, height=40, tile=16)
    assert img.shape == (40, 90, 3) and np.isfinite(img).all()


def test_presets_build():
    for preset, patch in (("stylegan2-nci", 112), ("stylegan2-nci-pfg", 101)):
        cfg = load_config(preset)
        assert cfg.generator.patch_size == patch
        with torch.device("meta"):
            G = ig.build_generator(cfg)
            n = cfg.generator.ts_input
            out = G(torch.zeros(2, cfg.generator.zg_dim), torch.zeros(2, cfg.generator.zl_dim, n, n),
                    torch.zeros(1, 3, n, n), noises=G.random_noises(2, n, device="meta"))
        assert out["rgb"].shape[-1] == patch


def test_pfg_tiles_seamlessly_nci_does_one_shot():
    pfg = ig.init_model("stylegan2-nci-pfg")
    s = pfg.synthesizer("cpu")
    c = pfg.canvas(2)
    r = ig.Region(-40, -24, 96, 64)
    assert np.abs(s.render(c, r, tile=16) - s.render(c, r, tile=96)).max() < 1e-4
    nci = ig.init_model("stylegan2-nci")
    assert len(nci.synthesizer("cpu").planner.tile_plan(r, 16)) == 1


def test_mini_table1_models_differ_only_in_architecture():
    """benchmarks/table1/mini: the paper's four Table 1 rows at half the tiny preset's resolution.

    Sizes as the paper's rows, halved (full / train: NCI 64 / 64, Patched 64 / 32, PFG and
    InfinityGAN 101 / 53), one reference size, the same widths and training constants, R1 gamma
    by StyleGAN2-ADA's rule for each patch size."""
    from pathlib import Path

    from infinitygan.discriminator import Discriminator

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "table1" / "mini"
    want = {"infinitygan": ("infinitygan", 101, 53), "stylegan2-nci-pfg": ("stylegan2-nci-pfg", 101, 53),
            "stylegan2-nci": ("stylegan2-nci", 64, 64), "stylegan2-nci-patched": ("stylegan2-nci", 64, 32)}
    cfgs = {name: load_config(root / f"{name}.yaml") for name in want}
    for name, (arch, full, patch) in want.items():
        cfg = cfgs[name]
        g, t = cfg.generator, cfg.training
        assert (g.arch, t.full_size, g.patch_size) == (arch, full, patch), name
        assert t.pre_resize == 64
        assert t.r1_gamma == pytest.approx(0.0002 * patch ** 2 / t.batch_size, rel=1e-2), name
        assert Discriminator(cfg.discriminator, patch).final_size in (3, 4), name
        with torch.device("meta"):
            G = ig.build_generator(cfg)
            n = g.ts_input
            m = n + 2 * G.geometry.gs_margin  # GS margin (0 without a structure synthesizer)
            out = G(torch.zeros(1, g.zg_dim), torch.zeros(1, g.zl_dim, m, m), torch.zeros(1, g.coords.channels, m, m),
                    noises=G.random_noises(1, n, device="meta"))
        assert out["rgb"].shape[-1] == patch, name
    ref = cfgs["infinitygan"]
    for name, cfg in cfgs.items():
        for key in ("zg_dim", "zl_dim", "style_dim", "mapping_layers", "n_up", "ts_channels"):
            assert getattr(cfg.generator, key) == getattr(ref.generator, key), (name, key)
        for key in ("batch_size", "lr", "diversity_weight", "r1_every", "pl_every", "ema_decay", "style_mixing"):
            assert getattr(cfg.training, key) == getattr(ref.training, key), (name, key)
