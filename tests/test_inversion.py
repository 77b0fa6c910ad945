"""Inversion (paper Appendix K): footprint, priors, optimisation, latents file, outpainting."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from infinitygan.errors import UserError
from infinitygan.inversion import Inversion, InversionConfig, footprint, load_latents, model_identity, psnr
from infinitygan.inversion.invert import learning_rate
from infinitygan.inversion.outpaint import feather_weights, outpaint, outpaint_region
from infinitygan.inversion.priors import (GaussianizedW, WPrior, degaussianize, gaussianize,
                                          noise_regularization, renormalize_noises)
from infinitygan.latents import Canvas
from infinitygan.synthesis import Region, Synthesizer

FAST = dict(w_samples=500)


@pytest.fixture(scope="module")
def target(tiny_model):
    """A 36x28 crop of the tiny model's own image (seed 5) at an unaligned place."""
    region = Region(-21, -13, 36, 28)
    img = Synthesizer(tiny_model.generator).render(tiny_model.canvas(5), region)
    return img, region


@pytest.fixture(scope="module")
def inverted(tiny_model, target):
    img, region = target
    inv = Inversion(tiny_model, InversionConfig(steps=15, seed=1, **FAST))
    losses = []
    lat = inv(img, region, callback=lambda s, l: losses.append(l))
    return lat, losses


def test_footprint_holds_everything_the_pixels_read(tiny_model):
    """Pixels of a region rendered on canvas A with B's footprint pasted over it == B's pixels."""
    synth = Synthesizer(tiny_model.generator)
    g = tiny_model.config.generator
    region = Region(-37, 5, 45, 29)
    fp = footprint(synth.geometry, region)
    b = Canvas(2, g.zg_dim, g.zl_dim)
    a = Canvas(9, g.zg_dim, g.zl_dim, global_latent=b.zg()[0])
    a.override_zl(fp.zl.row0, fp.zl.col0, b.zl(fp.zl.row0, fp.zl.rows, fp.zl.col0, fp.zl.cols))
    for j, w in enumerate(fp.noise):
        a.override_noise(j, w.row0, w.col0, b.noise(j, w.row0, w.rows, w.col0, w.cols))
    want = synth.render(b, region, tile=32)
    got = synth.render(a, region, tile=64, batch=2)
    assert np.abs(want - got).max() <= 1e-5
    # and the footprint is not larger than needed: the outermost zl column does matter
    zl = b.zl(fp.zl.row0, fp.zl.rows, fp.zl.col0, fp.zl.cols).requires_grad_(True)
    c = Canvas(2, g.zg_dim, g.zl_dim)
    c.override_zl(fp.zl.row0, fp.zl.col0, zl)
    synth.render_tensor(c, region).sum().backward()
    assert zl.grad[..., 0].abs().sum() > 0 and zl.grad[..., -1].abs().sum() > 0
    assert zl.grad[..., 0, :].abs().sum() > 0 and zl.grad[..., -1, :].abs().sum() > 0


def test_gaussianized_w_prior(tiny_model):
    w = torch.randn(100, 8) * 3
    assert torch.allclose(degaussianize(gaussianize(w)), w, atol=1e-5)
    stats = GaussianizedW.estimate(tiny_model.generator, 2000, seed=0)
    prior = WPrior(stats, "cpu")
    with torch.no_grad():
        v = gaussianize(tiny_model.generator.mapping(torch.randn(300, tiny_model.config.generator.zg_dim)))
    typical = float(prior(v))
    assert 0.5 < typical < 1.5  # per-dimension Mahalanobis of samples of the prior
    assert float(prior(stats.mean.float()[None])) < 1e-6
    assert float(prior(v + 3 * v.std(0))) > 5 * typical


def test_noise_regularisation_and_renormalisation():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(1, 64, 64, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 67, 67, generator=g), 4, 1)[0]
    smooth = smooth / smooth.std()
    assert noise_regularization([smooth]) > 20 * noise_regularization([white])
    n = [smooth * 3 + 2]
    renormalize_noises(n)
    assert abs(float(n[0].mean())) < 1e-5 and abs(float(n[0].std()) - 1) < 1e-2


def test_noise_regularisation_weighs_levels_as_stylegan2():
    """StyleGAN2's pyramid takes a plain 2x2 mean: a 32x32 checkerboard of 2x2 blocks is nearly
    uncorrelated at full size, a +-1 one-pixel checkerboard after one pooling (lag-1 products all
    -1: 1 per axis) and 0 after two. A pyramid that rescaled pooled maps to unit variance would
    give 16 per axis at that level."""
    i = torch.arange(32)
    board = (((i[:, None] // 2) + (i[None, :] // 2)) % 2).float() * 2 - 1  # (32, 32), +-1
    full = 2 * (1 / 31) ** 2  # level 0: 16 equal and 15 opposite neighbours per row / column
    assert float(noise_regularization([board])) == pytest.approx(2.0 + full, rel=1e-5)


def test_learning_rate_schedule():
    cfg = InversionConfig(steps=1000)
    lrs = [learning_rate(cfg, s) for s in range(1000)]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.1) and lrs[500] == pytest.approx(0.1)
    assert lrs[999] < 1e-3 and lrs[10] < lrs[40] < lrs[60]


def test_inversion_lowers_the_loss_and_beats_the_start(tiny_model, target, inverted):
    img, region = target
    lat, losses = inverted
    assert losses[-1]["pixel"] < 0.5 * losses[0]["pixel"]
    start = Synthesizer(tiny_model.generator).render(tiny_model.canvas(1), region)
    assert lat.metrics["psnr"] > psnr(start, img) + 3
    # every optimised variable has the footprint's shape
    fp = footprint(tiny_model.generator.geometry, region)
    assert lat.footprint == fp and lat.zl.shape[1:] == (fp.zl.rows, fp.zl.cols)
    assert [tuple(n.shape[1:]) for n in lat.noises] == [(w.rows, w.cols) for w in fp.noise]
    assert all(abs(float(n.std()) - 1) < 0.05 for n in lat.noises)  # renormalised


def test_inversion_is_deterministic_and_mask_aware(tiny_model, target):
    img, region = target
    cfg = InversionConfig(steps=2, seed=3, **FAST)
    mask = np.ones(img.shape[:2], np.uint8)
    mask[:, :10] = 0
    other = img.copy()
    other[:, :10] = -img[:, :10]  # only unknown pixels differ
    a = Inversion(tiny_model, cfg)(img, region, mask)
    b = Inversion(tiny_model, cfg)(other, region, mask)
    assert torch.equal(a.zl, b.zl) and torch.equal(a.styles, b.styles)
    assert all(torch.equal(x, y) for x, y in zip(a.noises, b.noises))
    c = Inversion(tiny_model, cfg)(other, region)  # without the mask the hidden pixels count
    assert not torch.equal(a.zl, c.zl)


def test_latents_file_reloads_and_renders_the_same(tiny_model, inverted, tmp_path):
    lat, _ = inverted
    path = lat.save(tmp_path / "lat.safetensors")
    back = load_latents(path, tiny_model)
    assert back.region == lat.region and back.footprint == lat.footprint and back.model_id == model_identity(tiny_model)
    want = Inversion(tiny_model, InversionConfig(**FAST)).render(lat, 0)  # differentiable path
    for seed in (0, 17):
        got = outpaint(tiny_model, back, seed, back.region, tile=16, batch=3)  # streaming engine
        assert np.abs(got - want).max() <= 1e-5
    assert psnr(want, lat.target.astype(np.float32) / 127.5 - 1) == pytest.approx(lat.metrics["psnr"], abs=0.05)


def test_latents_of_another_model_or_corrupt_are_refused(tiny_model, inverted, tmp_path):
    from infinitygan.api import init_model

    lat, _ = inverted
    path = lat.save(tmp_path / "lat.safetensors")
    with pytest.raises(UserError, match="another model"):
        load_latents(path, init_model("tiny", seed=1))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match="corrupt|not a readable"):
        load_latents(bad, tiny_model)
    import dataclasses

    dataclasses.replace(lat, zl=lat.zl[:, :-1]).save(tmp_path / "short.safetensors")
    with pytest.raises(UserError, match="footprint"):
        load_latents(tmp_path / "short.safetensors", tiny_model)


def test_outpaint_keeps_the_inverted_region_and_varies_outside(tiny_model, inverted):
    lat, _ = inverted
    region = outpaint_region(lat.region, 90, 50)
    assert (region.width, region.height) == (90, 50)
    a = outpaint(tiny_model, lat, 1, region, tile=32, batch=1)
    b = outpaint(tiny_model, lat, 2, region, tile=32, batch=1)
    a2 = outpaint(tiny_model, lat, 1, region, tile=64, batch=4)
    assert np.abs(a - a2).max() <= 1e-4  # any tile and batch size
    ir = lat.region
    inside = (slice(ir.y - region.y, ir.y - region.y + ir.height), slice(ir.x - region.x, ir.x - region.x + ir.width))
    scale = max(1.0, float(np.abs(a).max()))  # the random tiny model's pixels reach about 2.5
    assert np.abs(a[inside] - b[inside]).max() <= 1e-5 * scale
    outside = np.ones(a.shape[:2], bool)
    outside[inside] = False
    assert np.abs(a - b)[outside].mean() > 0.05
    with pytest.raises(UserError, match="larger than the requested output"):
        outpaint_region(lat.region, 30, 50)


def test_paste_back(tiny_model, inverted):
    lat, _ = inverted
    region = outpaint_region(lat.region, 70, 40)
    ir = lat.region
    inside = (slice(ir.y - region.y, ir.y - region.y + ir.height), slice(ir.x - region.x, ir.x - region.x + ir.width))
    orig = lat.target.astype(np.float32) / 127.5 - 1
    hard = outpaint(tiny_model, lat, 1, region, feather=0)
    assert np.abs(hard[inside] - orig).max() <= 1e-6
    soft = outpaint(tiny_model, lat, 1, region, feather=6)
    plain = outpaint(tiny_model, lat, 1, region)
    assert np.abs(soft[inside][14, 18] - orig[14, 18]).max() <= 1e-6  # deep inside: the original
    assert np.abs(soft[inside][0, 20] - plain[inside][0, 20]).max() < np.abs(hard[inside][0, 20] - plain[inside][0, 20]).max() + 1e-6
    w = feather_weights(np.ones((9, 9)), 3)
    assert w[0, 0] == pytest.approx(1 / 3) and w[4, 4] == 1


def test_lpips_loads_local_weights_without_network(tmp_path, monkeypatch):
    import lpips

    from infinitygan.inversion.perceptual import backbone_cache_path, build_lpips, perceptual_loss

    def no_network(*a, **k):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match="not found"):
        perceptual_loss("lpips", "alex")
    warned = []
    assert perceptual_loss("auto", "alex", warn=warned.append) is None and len(warned) == 1
    assert perceptual_loss("none") is None
    # a backbone file in torchvision's layout (features.{i}.*), in the hub cache
    src = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    state = {}
    for _, sl in src.net.named_children():
        for idx, layer in sl.named_children():
            for k, v in layer.state_dict().items():
                state[f"features.{idx}.{k}"] = v + 1.0
    path = backbone_cache_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = build_lpips("alex")
    flat = {k.split(".", 1)[1]: v for k, v in model.net.state_dict().items()}  # "<idx>.weight" per slice
    assert all(torch.equal(flat[k[len("features."):]], v) for k, v in state.items())
    heads = torch.load(f"{lpips.__file__.rsplit('/', 1)[0]}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in heads.items())
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(model(a, a).mean()) < 1e-6 < float(model(a, b).mean())
    # a file that is not the backbone: one clear error
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="does not hold"):
        build_lpips("alex", tmp_path / "wrong.pth")


def test_regional_resampling_of_the_outpainted_area(tiny_model, inverted):
    from infinitygan.scene.scene import Resample

    lat, _ = inverted
    region = outpaint_region(lat.region, 70, 40)
    ir = lat.region
    inside = (slice(ir.y - region.y, ir.y - region.y + ir.height), slice(ir.x - region.x, ir.x - region.x + ir.width))
    plain = outpaint(tiny_model, lat, 1, region)
    res = outpaint(tiny_model, lat, 1, region, resample=[Resample(region.x - 200, region.y, 215, 40, 99)])
    assert np.abs(res[:, :12] - plain[:, :12]).mean() > 0.05  # the resampled strip changed
    assert np.abs(res[inside] - plain[inside]).max() <= 1e-5 * max(1.0, float(np.abs(plain).max()))


def test_high_bit_depth_targets_are_scaled_not_clipped(tmp_path):
    """16-bit grey PNGs and float TIFFs used to become all-white / all-black targets (exit 0)."""
    from PIL import Image

    from infinitygan.inversion.target import load_target

    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "f.tif")
    for name in ("g16.png", "f.tif"):
        px, known = load_target(tmp_path / name)
        assert px.shape == (64, 64, 3) and known.all()
        assert px.min() == pytest.approx(-1, abs=1e-2) and px.max() == pytest.approx(1, abs=1e-2), name
        assert abs(float(px.mean())) < 0.02, name  # a ramp, not a constant
    Image.fromarray((ramp * 5 - 2).astype(np.float32)).save(tmp_path / "bad.tif")
    with pytest.raises(UserError):
        load_target(tmp_path / "bad.tif")
