"""The deliberate departures from the authors' training, term by term against the recorded iteration
(tests/test_official_training_parity.py's fixture): their angular diversity as recorded and ours
(paper Eq. 2, training.losses), the path length (StyleGAN2's), the real and fake vertical labels
(training.inputs) and the training coordinates (coords)."""
from __future__ import annotations

import math

import torch

from infinitygan.config import TrainingConfig
from infinitygan.training import losses as L
from infinitygan.training.official_init import official_training_state
from infinitygan.training.phases import LossTerms

from test_official_training_parity import (TOL64, _path, fx,  # noqa: F401 (fixture)
                                           run_iteration, their_angular_diversity)


# --------------------------------------------------------------- the deliberate departures
def test_their_diversity_form_as_recorded(fx):
    """The swapped-in form is theirs: it reproduces their recorded values of every phase."""
    inp, out = fx
    for ph in ("D", "G", "PL"):
        zl, zs = inp[f"{ph}/rng/zl"], out[f"{ph}/gen/structure_latent"]
        val = their_angular_diversity(zl[0::2], zl[1::2], zs[0::2], zs[1::2])
        assert abs(float(val) - float(out[f"{ph}/div/loss_their"])) < TOL64


def test_our_diversity_is_paper_eq2_and_seeks_modes(fx):
    """Ours on their recorded pairs == Eq. 2 (L1 norms, per pair, mean over pairs); minimising it
    pushes the structures apart, theirs pulls them together (fixture README §6.1)."""
    inp, out = fx
    zl, zs = inp["G/rng/zl"], out["G/gen/structure_latent"]
    zl1, zl2, zs1, zs2 = zl[0::2], zl[1::2], zs[0::2], zs[1::2]
    eq2 = torch.stack([(a - b).abs().sum() / ((c - d).abs().sum() + 1e-5) for a, b, c, d in zip(zl1, zl2, zs1, zs2)]).mean()
    ours = L.diversity_loss(zl1, zl2, zs1, zs2)
    assert abs(float(ours) - float(eq2)) < TOL64 * float(eq2)
    # their means-form variant is Eq. 2 up to the numel ratio and the pair averaging
    ratio = zl[0].numel() / zs[0].numel()
    means = float(out["G/div/loss_their_nonangular_variant"]) * ratio
    assert abs(means - float(ours)) < 0.05 * float(ours)
    # direction: move the structures of each pair further apart
    zs2_far = zs1 + 1.5 * (zs2 - zs1)
    assert L.diversity_loss(zl1, zl2, zs1, zs2_far) < ours
    assert their_angular_diversity(zl1, zl2, zs1, zs2_far) > their_angular_diversity(zl1, zl2, zs1, zs2)


def test_our_path_length_is_stylegan2s(fx):
    """Ours sums over the style dimension D (StyleGAN2, the paper's reference), theirs takes the
    mean: the same gradients give lengths sqrt(D) larger, and the importer scales their running
    mean by sqrt(D) so that fine-tuning starts where they were."""
    inp, out = fx
    run = run_iteration(fx, torch.float64, LossTerms(diversity=their_angular_diversity))
    D = run["cfg"].generator.style_dim
    ours_mean = run["values"]["reg/path_length"]
    assert abs(ours_mean - math.sqrt(D) * float(out["PL/loss/path_lengths"].mean())) < TOL64
    _, tensors, _ = official_training_state(_path("train_init_ckpt.pth.tar", fx.dir), TrainingConfig())
    assert abs(float(tensors["pl_mean"]) - math.sqrt(D) * float(out["PL/loss/mean_path_length_before"])) < 1e-6


def test_fake_label_formula(fx):
    """Both label a fake patch start / (V - 1) * 2 - 1; theirs is computed before the pairing, so
    an odd sample carries the label of a window it does not use; ours pairs the label with the
    window (``sample_fake_inputs``)."""
    inp, out = fx
    for ph in ("D", "G"):
        x_st = inp[f"{ph}/rng/coord_x_st"].double()
        label = out[f"{ph}/loss/ac_fake_label"][:, 0].double()
        assert torch.allclose(label, (x_st / 9 * 2 - 1), atol=1e-7)
    from infinitygan.config import load_config
    from infinitygan.geometry import Geometry
    from infinitygan.training.inputs import sample_fake_inputs

    cfg = load_config("tiny")
    x = sample_fake_inputs(cfg, Geometry(4, 4, 7), 8, torch.Generator().manual_seed(3), pair_half=4)
    assert torch.equal(x.label[4:], x.label[:4]) and torch.equal(x.coords[4:], x.coords[:4])


def test_real_label_formula(fx):
    """Theirs: row / (F - P - 1) * 2 - 1 with rows 0..F - P - 1 (their crop never takes the last
    offset F - P: 95 and 96 for 197 / 101);
    ours: row / (F - P) * 2 - 1 over every offset 0..F - P, so both ends of the image are +-1."""
    inp, _ = fx
    B, F_, P = inp["data/patch"].shape[0], inp["data/full"].shape[-1], inp["data/patch"].shape[-1]
    rows = torch.tensor([float(inp[f"data/crop_xst_{i}"]) for i in range(B)])
    assert torch.allclose(inp["data/ac_coords"][:, 0].double(), (rows / (F_ - P - 1) * 2 - 1).double(), atol=1e-7)
    from infinitygan.data.patches import random_patch

    img = torch.arange(F_, dtype=torch.float32).view(1, F_, 1).expand(3, F_, F_).contiguous()
    seen = set()
    for s in range(400):
        patch, label = random_patch(img, P, torch.Generator().manual_seed(s))
        row = int(patch[0, 0, 0])
        assert abs(label - (row / (F_ - P) * 2 - 1)) < 1e-12
        seen.add(row)
    assert 0 in seen and F_ - P in seen


def test_training_coordinates(fx):
    """Our training windows (``coords.training_window``) against their recorded grids.

    * vertical: the same step (0.3) and start positions; ours are centred on the horizon on
      average, theirs half a cell (0.15) lower;
    * horizontal: the same angle and jitter scale for the cos channel; their sin channel has its
      own jitter (off the unit circle), ours shares the cos channel's; their period holds 140
      columns whose first and last are the same angle (a repeated column at the seam), ours is
      exactly 139 cells.
    """
    from infinitygan.config import CoordConfig
    from infinitygan.coords import training_window

    inp, out = fx
    cfg = CoordConfig()
    r0, r1 = 0.15000033378601074, 0.007194250822067261  # their jitter half-ranges (README §4)
    for ph in ("D", "G", "PL"):
        theirs = out[f"{ph}/gen/coords_before_pairing"].double()
        B, _, S, _ = theirs.shape
        xs, ys = inp[f"{ph}/rng/coord_x_st"], inp[f"{ph}/rng/coord_y_st"]
        for b in range(B):
            dv = float(inp[f"{ph}/rng/coord_perturb_uniform_0"][b]) * 2 * r0 - r0
            dh = float(inp[f"{ph}/rng/coord_perturb_uniform_1"][b]) * 2 * r1 - r1
            ours = training_window(cfg, int(xs[b]), int(ys[b]), dv, dh * 139 / 2, S)
            raw_v = 0.3 * (torch.arange(S, dtype=torch.float64) + int(xs[b])) - 6.6 + dv
            assert torch.allclose(theirs[b, 0, :, 0], torch.tanh(raw_v), atol=1e-6)
            assert torch.allclose(ours[0, :, 0], torch.tanh(raw_v + 0.15), atol=1e-12)
            assert torch.allclose(ours[1] ** 2 + ours[2] ** 2, torch.ones(S, S, dtype=torch.float64))
            cols = int(ys[b]) + torch.arange(S)
            if int(ys[b]) + S <= 140:  # no wrap: the cos channels agree
                assert torch.allclose(ours[1], theirs[b, 1], atol=1e-6)
            else:  # their window repeats the angle +-pi at the seam; ours continues with period 139
                seam = 140 - int(ys[b])
                assert torch.allclose(theirs[b, 1, 0, seam - 1], theirs[b, 1, 0, seam], atol=1e-3)
                assert torch.allclose(ours[1, 0, seam - 1:S - 1], theirs[b, 1, 0, seam:], atol=1e-6)
            assert cols.numel() == S
