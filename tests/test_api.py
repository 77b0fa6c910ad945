"""The Python API validates its inputs at the boundary: clear UserErrors, before any work."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import infinitygan as ig
from infinitygan import UserError


@pytest.mark.parametrize("kwargs, needle", [
    (dict(seed=1, width=64.5, height=64), "width must be an integer"),
    (dict(seed=1.5, width=64, height=64), "seed must be an integer"),
    (dict(seed=None, width=64, height=64), "seed must be an integer, got None"),
    (dict(seed=1, width=True, height=64), "width must be an integer"),
    (dict(seed=1, width=0, height=64), "width must be >= 1"),
    (dict(seed=1, width=64, height=64, x=0.5), "x must be an integer"),
    (dict(seed=1, width=64, height=64, tile=-3), "tile must be >= 1"),
    (dict(seed=1, width=64, height=64, batch=0), "batch must be >= 1"),
    (dict(seed=1, width=64, height=64, device="gpu9"), "unknown device"),
    (dict(seed=1, width=64, height=64, dtype="float8"), "unknown dtype"),
])
def test_generate_refuses_bad_arguments(tiny_model, kwargs, needle):
    with pytest.raises(UserError, match=needle):
        tiny_model.generate(**kwargs)


def test_numpy_integers_are_integers(tiny_model):
    img = tiny_model.generate(seed=np.int64(1), width=np.int32(32), height=np.int64(32))
    assert img.shape == (32, 32, 3) and img.dtype == np.float32


def test_init_model_seed_and_preset():
    with pytest.raises(UserError, match="seed must be an integer"):
        ig.init_model("tiny", seed=0.5)
    with pytest.raises(UserError, match="unknown preset"):
        ig.init_model("no-such-preset")


@pytest.mark.parametrize("array, needle", [
    (np.zeros((0, 0, 3)), "non-empty"), (np.zeros((4, 4)), r"\(H, W, 3\)"), (np.zeros((4, 4, 4)), r"\(H, W, 3\)"),
])
def test_save_image_refuses_bad_arrays(tmp_path, array, needle):
    with pytest.raises(UserError, match=needle):
        ig.save_image(tmp_path / "x.png", array)
    assert not (tmp_path / "x.png").exists()


def test_save_image_refuses_unknown_extension(tmp_path):
    with pytest.raises(UserError, match="unknown output extension"):
        ig.save_image(tmp_path / "x.xyz", np.zeros((4, 4, 3), np.float32))


def test_generate_to_file_refuses_a_directory_before_any_work(tiny_model, tmp_path, monkeypatch):
    def no_synthesis(*a, **k):  # the refusal must come before the engine is touched
        raise AssertionError("synthesis started")

    monkeypatch.setattr(ig.Synthesizer, "tiles", no_synthesis)
    with pytest.raises(UserError, match="output is a directory"):
        tiny_model.generate_to_file(tmp_path, seed=1, width=64, height=64)
    with pytest.raises(UserError, match="unknown output extension"):
        tiny_model.generate_to_file(tmp_path / "a.gif", seed=1, width=64, height=64)


def test_overrides_take_arrays_and_refuse_bad_ones(tiny_model):
    region = tiny_model.region(64, 64)
    synth = tiny_model.synthesizer("cpu")
    plain = synth.render(tiny_model.canvas(1), region)
    from_numpy, from_torch = tiny_model.canvas(1), tiny_model.canvas(1)
    values = np.random.default_rng(0).standard_normal((tiny_model.config.generator.zl_dim, 40, 40))
    from_numpy.override_zl(-20, -20, values)
    from_torch.override_zl(-20, -20, torch.from_numpy(values).float())
    a, b = synth.render(from_numpy, region), synth.render(from_torch, region)
    assert np.array_equal(a, b) and not np.allclose(a, plain)
    canvas = tiny_model.canvas(1)
    with pytest.raises(UserError, match="zl override must be"):
        canvas.override_zl(0, 0, np.zeros((3, 2, 2)))
    with pytest.raises(UserError, match="expected a tensor or an array"):
        canvas.override_zl(0, 0, "abc")
    with pytest.raises(UserError, match="finite"):
        canvas.override_zl(0, 0, np.full((tiny_model.config.generator.zl_dim, 2, 2), np.nan))
    with pytest.raises(UserError, match="row0 must be an integer"):
        canvas.override_zl(0.5, 0, np.zeros((tiny_model.config.generator.zl_dim, 2, 2)))
    with pytest.raises(UserError, match="noise override must be"):
        canvas.override_noise(0, 0, 0, np.zeros((2, 2, 2)))
    assert canvas.local_overrides == [] and canvas.noise_overrides == {}


def test_override_keeps_gradients(tiny_model):
    canvas = tiny_model.canvas(1)
    zl = torch.zeros(tiny_model.config.generator.zl_dim, 2, 2, requires_grad=True)
    canvas.override_zl(0, 0, zl)
    assert canvas.local_overrides[0].values is zl


def test_model_repr_is_one_short_line(tiny_model):
    r = repr(tiny_model)
    assert r.startswith("Model('tiny'") and "\n" not in r and len(r) < 160
