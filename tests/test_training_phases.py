"""Training: what a step computes from its configuration (training.phases, training.inputs): the
colour-consistency pairs and their order through the minibatch-stddev groups, texture coordinates,
the losses the baselines and texture models leave out. Helpers and the micro config: test_training."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from infinitygan.config import load_config
from infinitygan.training import losses

from test_training import FAST, MICRO, ckpt_meta, one_thread, train, write_cfg  # noqa: F401 (fixture)


def test_colour_consistency_weight_pairs_the_batch_and_changes_only_g(tmp_path):
    """The colour-consistency loss (not in the paper) needs G's batch in pairs; with weight 0 and
    no diversity loss the batch has none (the runs so far are unchanged); with a weight it moves
    G's first step, not D's."""
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.phases import uses_pairs
    from infinitygan.parallel.env import DistContext

    base = load_config(write_cfg(tmp_path / "a.yaml", diversity_weight=0.0))
    col = load_config(write_cfg(tmp_path / "b.yaml", diversity_weight=0.0, colour_consistency_weight=10.0))
    assert not uses_pairs(base) and uses_pairs(col)
    assert BatchPlan.make(col, None, 0, DistContext(), pairs=uses_pairs(col)).pair_half == 2
    logs = {}
    for name, cfg in (("base", base), ("col", col)):
        out = tmp_path / name
        train(cfg, "procedural", out, iterations=1, seed=0, samples=False, **FAST)
        logs[name] = load_file(str(sorted((out / "checkpoints").glob("ckpt-*.safetensors"))[-1]))
    g = [k for k in logs["base"] if k.startswith("g.")]
    d = [k for k in logs["base"] if k.startswith("d.")]
    assert g and d
    # D's step (phase d, before G's) sees the same inputs: the pairs only change G's batch
    assert all(torch.equal(logs["base"][k], logs["col"][k]) for k in d)
    assert any(not torch.equal(logs["base"][k], logs["col"][k]) for k in g)


def test_colour_pairs_are_two_places_of_one_canvas(tmp_path):
    """Colour-only pairs share zg, style mixing, the vertical coordinate and its label, and differ
    in zl and horizontal phase; diversity pairs (paper Eq. 2) share every coordinate."""
    from infinitygan.parallel.env import DistContext
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.nets import build_nets
    from infinitygan.training.phases import colour_pairs_only, uses_pairs

    for name, extra, own in (("col", {"diversity_weight": 0.0, "colour_consistency_weight": 1.0}, True),
                             ("div", {"diversity_weight": 1.0}, False)):
        cfg = load_config(write_cfg(tmp_path / f"{name}.yaml", **extra))
        assert colour_pairs_only(cfg) is own
        nets = build_nets(cfg, DistContext(), 0)
        x = BatchPlan.make(cfg, nets.G.geometry, 0, DistContext(), pairs=uses_pairs(cfg),
                           own_phase=colour_pairs_only(cfg)).g_inputs(5)
        k = x.pairs
        assert k == 2
        for t in (x.zg, x.label, x.mix_index, x.coords[:, :1]):
            assert torch.equal(t[:k], t[k:2 * k])
        assert not torch.equal(x.zl[:k], x.zl[k:2 * k])
        assert torch.equal(x.coords[:k, 1:], x.coords[k:2 * k, 1:]) is (not own)


@pytest.mark.parametrize("batch,pairs,group", [(16, 8, 4), (8, 4, 4), (12, 6, 4), (16, 8, 2), (4, 2, 4)])
def test_pair_separating_order_keeps_pairs_out_of_one_stddev_group(batch, pairs, group):
    """G's colour pairs reach D in an order where no minibatch-stddev group holds both members
    (the groups of discriminator.minibatch_stddev, checked on its own output)."""
    from infinitygan.discriminator import minibatch_stddev
    from infinitygan.training.phases import mbstd_groups, pair_separating_order

    # the groups as minibatch_stddev forms them: a one-hot sample per position, its stddev channel
    # is non-zero exactly at the positions that share its group
    groups = mbstd_groups(batch, group)
    for p in range(batch):
        x = torch.zeros(batch, 1, 1, 1)
        x[p] = 1.0
        y = minibatch_stddev(x, group)[:, 1, 0, 0]
        assert {q for q in range(batch) if y[q] > 1e-3} == {q for q in range(batch) if groups[q] == groups[p]}
    order = pair_separating_order(batch, pairs, group).tolist()
    assert sorted(order) == list(range(batch))
    where = {s: i for i, s in enumerate(order)}
    together = [j for j in range(pairs) if groups[where[j]] == groups[where[j + pairs]]]
    if len(set(groups)) == 1:
        assert order == list(range(batch)) and together == list(range(pairs))  # nothing to separate
    else:
        assert together == []
        # the plain order has the pairs together whenever pairs is a multiple of batch / group
        if pairs % len(set(groups)) == 0:
            assert all(groups[j] == groups[j + pairs] for j in range(pairs))


def test_texture_coordinates_visit_every_vertical_phase():
    """Texture coordinates are periodic vertically: training draws every one of the `period`
    phases (not 10 scenery starts), jittered by at most half a cell like the horizontal axis;
    scenery keeps its V vertical starts."""
    import math

    from infinitygan.config import CoordConfig
    from infinitygan.coords import sample_training_coords

    cfg = CoordConfig(system="texture")
    g = torch.Generator().manual_seed(0)
    coords, label = sample_training_coords(cfg, 3000, 2, g, dtype=torch.float64, jitter=False)
    # angle pi (2 m / period - 1) of phase m
    phase = torch.atan2(coords[:, 1, 0, 0], coords[:, 0, 0, 0]) / (2 * math.pi) * cfg.period + cfg.period / 2
    cells = torch.round(phase).long() % cfg.period
    assert torch.allclose(phase, torch.round(phase), atol=1e-6)
    assert set(cells.tolist()) == set(range(cfg.period))
    assert (label == 0).all()
    jit, _ = sample_training_coords(cfg, 500, 2, g, dtype=torch.float64)
    for c, s_ in ((0, 1), (2, 3)):  # vertical, horizontal: offsets within half a cell of a lattice phase
        ph = torch.atan2(jit[:, s_, 0, 0], jit[:, c, 0, 0]) / (2 * math.pi) * cfg.period + cfg.period / 2
        off = (ph - torch.round(ph)).abs()
        assert off.max() <= 0.5 + 1e-9 and off.max() > 0.4
    scen, lab = sample_training_coords(CoordConfig(), 400, 2, g, jitter=False)
    assert len(set(scen[:, 0, 0, 0].tolist())) == 10 and len(set(lab.tolist())) == 10


def test_texture_trains_without_the_fake_vertical_loss(tmp_path):
    base = json.loads(json.dumps(MICRO))
    base["generator"]["coords"] = {"system": "texture"}
    cfg = load_config(write_cfg(tmp_path / "tex.yaml", base))
    train(cfg, "procedural", tmp_path / "run", iterations=1, samples=False, **FAST)
    last = json.loads(ckpt_meta(tmp_path / "run" / "checkpoints" / "ckpt-00000001.safetensors")["progress"])["last"]
    assert "loss/d_aux_real" in last and "loss/diversity" in last
    assert not any(k in last for k in ("loss/d_aux_fake", "loss/g_aux", "aux/fake_error"))


def test_baseline_configs_skip_diversity_and_fake_aux(tmp_path, monkeypatch):
    base = json.loads(json.dumps(MICRO))
    base["generator"].update(gs_layers=0, gs_channels=8, coords={"system": "object"})
    cfg = load_config(write_cfg(tmp_path / "base.yaml", base))
    called = []
    orig = losses.diversity_loss
    monkeypatch.setattr(losses, "diversity_loss", lambda *a, **k: called.append(1) or orig(*a, **k))
    res = train(cfg, "procedural", tmp_path / "run", iterations=2, samples=False, **FAST)
    assert res["iteration"] == 2 and not called
    progress = json.loads(ckpt_meta(tmp_path / "run" / "checkpoints" / "ckpt-00000002.safetensors")["progress"])
    assert "loss/d_aux_fake" not in progress["last"] and "loss/g_aux" not in progress["last"]
    assert "loss/diversity" not in progress["last"] and "loss/d_aux_real" in progress["last"]
