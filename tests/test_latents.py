"""The canvas hash: determinism, position-purity, Gaussian statistics, exact far phases."""

import torch

from infinitygan.config import CoordConfig
from infinitygan.coords import canvas_coords, coordinate_grid
from infinitygan.latents import Canvas, gaussian_field, stream_key


def test_values_depend_only_on_position():
    k = stream_key(3, "zl")
    big = gaussian_field(k, 4, torch.arange(-5, 20), torch.arange(100, 140))
    small = gaussian_field(k, 4, torch.arange(2, 9), torch.arange(117, 121))
    assert torch.equal(big[:, 7:14, 17:21], small)


def test_gaussian_statistics_and_independence():
    z = gaussian_field(stream_key(0, "noise7"), 1, torch.arange(512), torch.arange(512))[0].double()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z[:, 1:] * z[:, :-1]).mean()) < 0.01  # horizontal neighbours uncorrelated
    assert abs((z[1:] * z[:-1]).mean()) < 0.01
    kurt = (z ** 4).mean()
    assert abs(kurt - 3) < 0.1


def test_streams_and_seeds_differ():
    r = torch.arange(8)
    a = gaussian_field(stream_key(1, "zl"), 2, r, r)
    assert not torch.equal(a, gaussian_field(stream_key(2, "zl"), 2, r, r))
    assert not torch.equal(a, gaussian_field(stream_key(1, "noise0"), 2, r, r))
    assert not torch.equal(a[0], a[1])  # channels differ


def test_far_positions_use_all_bits():
    r = torch.arange(4)
    near = gaussian_field(7, 1, r, r)
    far = gaussian_field(7, 1, r, r + 2 ** 40)
    far2 = gaussian_field(7, 1, r, r + 2 ** 41)
    assert not torch.equal(near, far) and not torch.equal(far, far2)
    neg = gaussian_field(7, 1, r, r - 2 ** 40)
    assert not torch.equal(neg, far)


def test_global_latent_is_fixed_per_seed():
    c = Canvas(5, 64, 16)
    assert torch.equal(c.zg(), Canvas(5, 64, 16).zg())
    assert not torch.equal(c.zg(), Canvas(6, 64, 16).zg())


def test_periodic_phase_is_exact_far_from_origin():
    cfg = CoordConfig()
    near = canvas_coords(cfg, -3, 6, 17, 5, dtype=torch.float64)
    shift = cfg.period * (2 ** 40 // cfg.period)
    far = canvas_coords(cfg, -3, 6, 17 + shift, 5, dtype=torch.float64)
    assert torch.equal(near, far)


def test_scenery_coordinates():
    cfg = CoordConfig()
    c = coordinate_grid(cfg, torch.tensor([-4, 0, 4]), torch.tensor([0, 139, 278]), dtype=torch.float64)
    assert torch.allclose(c[0, :, 0], torch.tanh(torch.tensor([-0.6, 0.0, 0.6], dtype=torch.float64)))
    assert torch.allclose(c[1, 0], torch.full((3,), -1.0, dtype=torch.float64))  # angle -pi, period 139
    tex = coordinate_grid(CoordConfig(system="texture"), torch.tensor([0, 2 * 139]), torch.tensor([5]))
    assert tex.shape == (4, 2, 1) and torch.allclose(tex[:, 0], tex[:, 1])
    obj = coordinate_grid(CoordConfig(system="object"), torch.arange(3), torch.arange(2))
    assert obj.shape == (3, 3, 2) and obj.abs().max() == 0


def test_a_lane_collision_does_not_repeat_a_row():
    """Two (channel, row) keys built to collide on the first 32-bit hash lane still get
    different rows of values: every coordinate is mixed on a 64-bit state (two lanes), so a
    single 32-bit collision cannot copy a whole zl row along every column."""
    from infinitygan.latents import _LANE_A, _absorb, _absorb64, _mix

    key = stream_key(11, "zl")
    hc = _absorb(torch.full((2,), _mix(key ^ _LANE_A), dtype=torch.int64), torch.arange(2))
    r1, r2 = 0, int(hc[0] ^ hc[1])  # channel 0 row r1 and channel 1 row r2 share lane A
    a1 = _absorb64(hc[0:1], torch.tensor([r1]))
    a2 = _absorb64(hc[1:2], torch.tensor([r2]))
    assert torch.equal(a1, a2)
    field = gaussian_field(key, 2, torch.tensor([r1, r2]), torch.arange(64))
    assert (field[0, 0] - field[1, 1]).abs().min() > 0  # no column agrees
