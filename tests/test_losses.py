"""Unit tests of the training losses (infinitygan.training.losses)."""
from __future__ import annotations

import math

import pytest
import torch

from infinitygan.training import losses as L


def test_d_logistic_loss_matches_definition():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.25])
    expect = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(L.d_logistic_loss(real, fake), expect, atol=1e-6)
    # a confident, correct D has a small loss
    assert L.d_logistic_loss(torch.full((4,), 20.0), torch.full((4,), -20.0)) < 1e-6


def test_g_nonsaturating_loss():
    fake = torch.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    loss = L.g_nonsaturating_loss(fake)
    assert torch.allclose(loss, -torch.log(torch.sigmoid(fake.detach())).mean(), atol=1e-6)
    loss.backward()
    assert (fake.grad < 0).all()  # G pushes the logits up


def test_r1_of_linear_discriminator_is_analytic():
    torch.manual_seed(0)
    w = torch.randn(3, 5, 5, requires_grad=True)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    logit = (x * w).flatten(1).sum(1) + 0.3
    r1 = L.r1_penalty(logit, x)
    assert torch.allclose(r1, w.detach().pow(2).sum(), rtol=1e-5)
    # differentiable w.r.t. D's parameters (create_graph): d||w||^2 / dw = 2 w
    r1.backward()
    assert torch.allclose(w.grad, 2 * w.detach(), rtol=1e-5)


def test_r1_is_zero_for_constant_discriminator():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    logit = 0.0 * x.flatten(1).sum(1) + 1.0
    assert L.r1_penalty(logit, x).item() == 0.0


def test_path_length_penalty_analytic():
    torch.manual_seed(1)
    B, K, Dm, H = 3, 2, 4, 5
    A = torch.randn(K, Dm, 3 * H * H, requires_grad=True)  # "G's weights"
    styles = torch.randn(B, K, Dm, requires_grad=True)
    img = torch.einsum("bkd,kdp->bp", styles, A).view(B, 3, H, H)
    y = torch.randn(B, 3, H, H) / math.sqrt(H * H)
    pen, new_mean, lengths = L.path_length_penalty(img, styles, torch.tensor(0.5), 0.1, noise=y)
    # d(img . y)/d styles[b, k] = A[k] @ y[b]
    g = torch.einsum("kdp,bp->bkd", A.detach(), y.flatten(1))
    expect = g.pow(2).sum(2).mean(1).sqrt()
    assert torch.allclose(lengths, expect, rtol=1e-5)
    assert torch.allclose(new_mean, 0.5 + 0.1 * (expect.mean() - 0.5), rtol=1e-6)
    assert torch.allclose(pen, (expect - new_mean).pow(2).mean(), rtol=1e-5)
    assert not new_mean.requires_grad and not lengths.requires_grad
    pen.backward()  # differentiable w.r.t. the weights (create_graph)
    assert A.grad is not None and torch.isfinite(A.grad).all() and A.grad.abs().sum() > 0


def test_path_length_default_noise_and_reduce():
    styles = torch.randn(2, 3, 4, requires_grad=True)
    img = (styles.sum((1, 2))[:, None, None, None] * torch.ones(2, 3, 6, 6))
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    a = L.path_length_penalty(img, styles, 0.0, 0.01, generator=g1)
    b = L.path_length_penalty(img, styles, 0.0, 0.01, generator=g2)
    assert torch.equal(a[2], b[2])  # reproducible from the generator
    # the running mean uses the reduced (all-process) mean
    _, m, _ = L.path_length_penalty(img, styles, 0.0, 1.0, generator=g1, reduce_mean=lambda x: x * 0 + 7.0)
    assert m.item() == pytest.approx(7.0)


def test_aux_loss_uses_output_zero_only():
    aux = torch.tensor([[0.5, 9.0, -9.0], [-0.25, 3.0, 1.0]])
    label = torch.tensor([0.0, 0.25])
    assert L.aux_vertical_loss(aux, label).item() == pytest.approx((0.5 + 0.5) / 2)
    aux2 = aux.clone()
    aux2[:, 1:] = torch.randn(2, 2) * 100
    assert L.aux_vertical_loss(aux2, label) == L.aux_vertical_loss(aux, label)
    a = aux.clone().requires_grad_(True)
    L.aux_vertical_loss(a, label).backward()
    assert (a.grad[:, 1:] == 0).all() and (a.grad[:, 0] != 0).all()


def test_diversity_loss_value_and_direction():
    torch.manual_seed(2)
    zl1, zl2 = torch.randn(3, 4, 7, 7), torch.randn(3, 4, 7, 7)
    zs1, zs2 = torch.randn(3, 2, 3, 3), torch.randn(3, 2, 3, 3)
    val = L.diversity_loss(zl1, zl2, zs1, zs2)
    num = (zl1 - zl2).abs().flatten(1).sum(1)
    den = (zs1 - zs2).abs().flatten(1).sum(1)
    assert torch.allclose(val, (num / (den + 1e-5)).mean(), rtol=1e-6)
    # structures further apart -> smaller loss (mode seeking, not the reversed "angular" variant)
    far = L.diversity_loss(zl1, zl2, zs1, zs1 + 3.0 * (zs2 - zs1))
    assert far < val
    # a gradient step on the loss moves zS apart
    s2 = zs2.clone().requires_grad_(True)
    L.diversity_loss(zl1, zl2, zs1, s2).backward()
    with torch.no_grad():
        stepped = s2 - 0.1 * s2.grad / s2.grad.abs().max()
    assert (stepped - zs1).abs().sum() > (zs2 - zs1).abs().sum()


def test_diversity_loss_identical_structures_is_finite():
    zl1, zl2 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    zs = torch.randn(2, 2, 3, 3)
    v = L.diversity_loss(zl1, zl2, zs, zs.clone())
    assert torch.isfinite(v) and v > 1e3  # eps keeps it finite; large: collapsed structures


def test_colour_consistency_loss_value_and_what_it_ignores():
    torch.manual_seed(3)
    a, b = torch.randn(3, 3, 9, 9), torch.randn(3, 3, 9, 9)
    d = a.mean((2, 3)) - b.mean((2, 3))
    assert torch.allclose(L.colour_consistency_loss(a, b), (d * d).mean(), rtol=1e-6)
    # the layout is free: b rearranged (the same mean colours) costs nothing against b
    shuffled = b.flatten(2)[:, :, torch.randperm(81)].view_as(b)
    assert L.colour_consistency_loss(b, shuffled) < 1e-12
    # squared: a whole-palette difference weighs (0.8 / 0.1)^2 = 64x a small local shift
    small = L.colour_consistency_loss(a, a + 0.1)
    big = L.colour_consistency_loss(a, a + 0.8)
    assert torch.allclose(big / small, torch.tensor(64.0), rtol=1e-4)
    # the gradient pulls the two mean colours together
    b2 = b.clone().requires_grad_(True)
    L.colour_consistency_loss(a, b2).backward()
    with torch.no_grad():
        stepped = b2 - 10.0 * b2.grad
    assert L.colour_consistency_loss(a, stepped) < L.colour_consistency_loss(a, b)


def test_losses_accept_bf16():
    x = torch.randn(4, dtype=torch.bfloat16)
    assert L.d_logistic_loss(x, x).dtype == torch.float32
    assert L.g_nonsaturating_loss(x).dtype == torch.float32
    assert L.g_nonsaturating_loss(torch.zeros(2)).item() == pytest.approx(math.log(2.0))  # softplus(0) = ln 2
