"""benchmarks/train_speed.py's FLOP counting (the figures of docs/benchmarks.md rest on it)."""

import torch
import torch.nn.functional as F

from conftest import benchmark_script


def _bench():
    return benchmark_script("train_speed")


def test_conv_flops_count_groups_and_the_gradients_asked_for():
    ts = _bench()
    x = torch.randn(2, 4, 10, 10, requires_grad=True)
    w = torch.randn(4, 1, 3, 3)  # depthwise, a fixed kernel: no weight gradient
    with ts._flop_counter() as c:
        y = F.conv2d(x, w, groups=4)
    assert c.get_total_flops() == 2 * (2 * 8 * 8) * (4 * 1 * 9)
    with ts._flop_counter() as c:
        y.sum().backward()
    assert c.get_total_flops() == 2 * (2 * 8 * 8) * (4 * 1 * 9)  # the input gradient only
    wt = torch.randn(4, 6, 3, 3, requires_grad=True)  # transposed: per input position
    with ts._flop_counter() as c:
        out = F.conv_transpose2d(x, wt, stride=2)
    assert c.get_total_flops() == 2 * (2 * 10 * 10) * (4 * 6 * 9)
    with ts._flop_counter() as c:
        out.sum().backward()
    assert c.get_total_flops() == 2 * 2 * (2 * 10 * 10) * (4 * 6 * 9)  # input and weight gradients
