"""The training forward's fused layers are the same function as the textbook modules, to float64
rounding: the output, the gradient of every input and every parameter, and the double backward
as training takes it (R1 through D: the gradient w.r.t. the image, back-propagated into D's
parameters; path length through G's styled convs: the gradient w.r.t. the styles,
back-propagated into every parameter).

* D (``discriminator.ConvLayer``): conv + bias + leaky ReLU x sqrt(2) (x the residual
  1 / sqrt(2)) run as one conv carrying the bias and the gains, then one leaky ReLU.
* G (``texture.StyledConv._training_forward``): demodulation, noise, bias and gain folded into
  one addcmul, bias and leaky ReLU in place.

The references below are written from the definitions (StyleGAN2's modulated conv with weights
modulated and demodulated per sample; bias, leaky ReLU 0.2, gain sqrt(2)), not with the fused
code; they share only the plain convolution / blur / linear layers.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from infinitygan.config import DiscriminatorConfig
from infinitygan.discriminator import ConvLayer, Discriminator, ResBlock, minibatch_stddev
from infinitygan.texture import StyledConv
from infinitygan.training.losses import path_length_penalty, r1_penalty

SQRT2 = math.sqrt(2.0)
TOL = 1e-10  # relative to the largest magnitude of the reference (float64)


def assert_close(got, ref, what):
    assert got is not None and ref is not None, what
    got, ref = got.detach(), ref.detach()
    scale = max(1.0, float(ref.abs().max()))
    err = float((got - ref).abs().max())
    assert err <= TOL * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def grads(out, wrt, cotangent=None, create_graph=False):
    return torch.autograd.grad(out, wrt, cotangent, create_graph=create_graph, allow_unused=True)


def assert_same_function(fused, plain, inputs, params, double):
    """Output, first-order gradients of every input and parameter (random cotangent), and the
    gradients of ``double(output, inputs)`` (a penalty built on a create_graph gradient)."""
    got, ref = fused(*inputs), plain(*inputs)
    assert_close(got, ref, "output")
    names = [f"input {i}" for i in range(len(inputs))] + [n for n, _ in params]
    wrt = [*inputs, *(p for _, p in params)]
    g = torch.randn_like(ref)
    for name, a, b in zip(names, grads(got, wrt, g), grads(ref, wrt, g)):
        assert a is not None, f"{name}: no gradient"  # every input and parameter takes part
        assert_close(a, b, f"d/d {name}")
    pg, pr = double(fused, inputs), double(plain, inputs)
    assert_close(pg, pr, "penalty")
    for name, a, b in zip(names, grads(pg, wrt), grads(pr, wrt)):
        if a is None or b is None:  # (unused in the penalty: then in neither)
            assert a is None and b is None or float((a if a is not None else b).abs().max()) == 0, name
            continue
        assert_close(a, b, f"double backward, d/d {name}")


def randomized(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ---------------------------------------------------------------------------------- D
def plain_conv_layer(layer: ConvLayer, x, gain=1.0):
    """(blur) -> equalized conv -> (+ bias, leaky ReLU 0.2, x sqrt(2)) -> x gain."""
    if layer.downsample:
        x = layer[0](x)
    conv = layer[1 if layer.downsample else 0]
    y = F.conv2d(x, conv.weight * conv.scale, conv.bias, stride=conv.stride, padding=conv.padding)
    if layer.activate:
        y = F.leaky_relu(y + layer[-1].bias.view(1, -1, 1, 1), 0.2) * SQRT2
    return y * gain


def plain_res_block(block: ResBlock, x):
    return (plain_conv_layer(block.conv2, plain_conv_layer(block.conv1, x)) + plain_conv_layer(block.skip, x)) / SQRT2


def plain_discriminator(D: Discriminator, img):
    x = plain_conv_layer(D.from_rgb, img)
    for b in D.blocks:
        x = plain_res_block(b, x)
    f = plain_conv_layer(D.final_conv, minibatch_stddev(x, D.mbstd_group)).flatten(1)
    return D.head(f).squeeze(1), D.aux_head(f)


def r1(net, inputs):
    """R1 as training takes it (losses.r1_penalty): create_graph gradient w.r.t. the input image."""
    out = net(*inputs)  # D's logit (B,), or a layer's output (B, C, H, W), summed per sample
    return r1_penalty(out if out.dim() == 1 else out.flatten(1).sum(1), inputs[0])


@pytest.mark.parametrize("downsample,activate,kernel,gain", [
    (False, True, 3, 1.0), (True, True, 3, 1 / SQRT2), (True, False, 1, 1 / SQRT2), (False, True, 1, 1.0)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_discriminator_conv_layer(downsample, activate, kernel, gain, layout):
    layer = randomized(ConvLayer(5, 6, kernel, downsample=downsample, activate=activate).double(), 1)
    x = torch.randn(3, 5, 13, 13, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    assert_same_function(lambda h: layer(h, gain), lambda h: plain_conv_layer(layer, h, gain), [x],
                         list(layer.named_parameters()), r1)


def test_discriminator_res_block():
    block = randomized(ResBlock(4, 6).double(), 2)
    x = torch.randn(2, 4, 15, 15, dtype=torch.float64, requires_grad=True)
    assert_same_function(block, lambda h: plain_res_block(block, h), [x], list(block.named_parameters()), r1)


def test_the_whole_discriminator_with_r1():
    """D of a 35-pixel patch (35 -> 17 -> 8 -> 4), both heads: every parameter's gradient of a
    logit and of R1 as the fused and the textbook layers give them."""
    D = randomized(Discriminator(DiscriminatorConfig(channels=[4, 8, 8, 8], mbstd_group=2), 35).double(), 3)
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(0.5)
    img = torch.randn(4, 3, 35, 35, dtype=torch.float64, requires_grad=True)
    assert_same_function(lambda i: D(i)[0], lambda i: plain_discriminator(D, i)[0], [img],
                         [(n, p) for n, p in D.named_parameters() if not n.startswith("aux_head")], r1)
    # the auxiliary head too (its parameters are unused by the logit)
    assert_close(D(img)[1], plain_discriminator(D, img)[1], "aux head")
    wrt = [p for _, p in D.named_parameters()]
    g = torch.randn(4, D.aux_head[-1].weight.shape[0], dtype=torch.float64)
    for (name, _), a, b in zip(D.named_parameters(), grads(D(img)[1], wrt, g), grads(plain_discriminator(D, img)[1], wrt, g)):
        if name.startswith("head"):
            assert a is None and b is None, name
        else:
            assert_close(a, b, f"aux d/d {name}")


# ---------------------------------------------------------------------------------- G
def plain_styled_conv(sc: StyledConv, x, style, noise):
    """StyleGAN2's styled conv from its definition: each sample's weights modulated by its style
    scales and demodulated, the plain conv (with the upsampling and blur of ``_conv``), noise,
    bias, leaky ReLU 0.2, gain sqrt(2)."""
    conv = sc.conv
    w = conv.weight * conv.scale
    s = conv.modulation(style)
    outs = []
    for b in range(x.shape[0]):
        wb = w * s[b].view(1, -1, 1, 1)
        wb = wb * torch.rsqrt(wb.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        outs.append(conv._conv(x[b:b + 1], wb))
    out = torch.cat(outs)
    if noise is not None:
        out = out + sc.noise.weight * noise
    return F.leaky_relu(out + sc.activate.bias.view(1, -1, 1, 1), 0.2) * SQRT2


def path_length(net, inputs):
    """Path length as training takes it (losses.path_length_penalty): create_graph gradient
    w.r.t. the styles (B, n_styles = 1, D), a fixed image-space direction."""
    x, styles = inputs[0], inputs[1]
    img = net(*inputs)
    direction = torch.randn(img.shape, generator=torch.Generator().manual_seed(7), dtype=img.dtype)
    penalty, _, _ = path_length_penalty(img, styles, 0.3, 0.01, noise=direction / math.sqrt(img[0, 0].numel()))
    return penalty


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_styled_conv_training_forward(upsample, with_noise, layout):
    sc = randomized(StyledConv(6, 5, 8, upsample=upsample).double(), 4)
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    styles = torch.randn(3, 1, 8, dtype=torch.float64, requires_grad=True)  # (B, n_styles, D)
    size = 2 * 9 - 1 - 2 if upsample else 9 - 2
    noise = torch.randn(3, 1, size, size, dtype=torch.float64) if with_noise else None

    calls = []
    fused_forward = sc._training_forward

    def spy(*a):
        calls.append(1)
        return fused_forward(*a)

    sc._training_forward = spy  # (the fused path is the one under test)
    params = [(n, p) for n, p in sc.named_parameters() if with_noise or not n.startswith("noise")]
    assert_same_function(lambda h, st: sc(h, st[:, 0], noise), lambda h, st: plain_styled_conv(sc, h, st[:, 0], noise),
                         [x, styles], params, path_length)
    assert calls
    with torch.no_grad():  # and the inference path is the same function
        assert_close(sc(x, styles[:, 0], noise), plain_styled_conv(sc, x, styles[:, 0], noise), "inference")
