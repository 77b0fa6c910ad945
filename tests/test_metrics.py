"""FID / KID / the evaluation protocol / the eval command (infinitygan.metrics)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml

from infinitygan.cli import main
from infinitygan.config import load_config
from infinitygan.errors import UserError
from infinitygan.metrics import evaluate as E
from infinitygan.metrics import inception as I
from infinitygan.metrics import protocol as P
from infinitygan.metrics.fid import frechet_distance, gaussian_stats, kid

MICRO = {
    "name": "micro",
    "generator": {"zg_dim": 16, "zl_dim": 8, "style_dim": 16, "mapping_layers": 2, "gs_layers": 2,
                  "gs_kernel": 3, "gs_channels": 8, "n_up": 2, "ts_channels": [16, 16, 8, 8], "ts_input": 8},
    "discriminator": {"channels": [8, 16, 16, 16], "mbstd_group": 2},
    "training": {"batch_size": 4, "full_size": 33, "pre_resize": None},
}


@pytest.fixture(autouse=True, scope="module")
def _modest_cpu():
    """The machine is shared: one intra-op thread (no subprocesses are started here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def micro_model_file(tmp_path):
    from infinitygan.api import init_model

    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    path = tmp_path / "micro.safetensors"
    init_model(str(cfg), seed=0).save(path)
    return path


@pytest.fixture
def micro_pre_model_file(tmp_path):
    """The micro model trained on data pre-resized to 24 (full size 33, patch 17)."""
    from infinitygan.api import init_model

    cfg = tmp_path / "micro-pre.yaml"
    cfg.write_text(yaml.safe_dump({**MICRO, "training": {**MICRO["training"], "pre_resize": 24}}))
    path = tmp_path / "micro-pre.safetensors"
    init_model(str(cfg), seed=0).save(path)
    return path


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------ FID / KID
def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d, rank in [(6, None), (12, None), (12, 5)]:  # full rank and singular (like N < 2048)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_cov(rng, d, rank), _random_cov(rng, d)
        ours = frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)
    # closed form for commuting (diagonal) covariances: sum (sqrt a - sqrt b)^2 + |mu1 - mu2|^2
    a, b = rng.uniform(0.1, 3, 9), rng.uniform(0.1, 3, 9)
    mu = rng.standard_normal(9)
    expect = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + (mu ** 2).sum())
    assert frechet_distance(mu, np.diag(a), np.zeros(9), np.diag(b)) == pytest.approx(expect, rel=1e-10)
    assert frechet_distance(mu, np.diag(a), mu, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_gaussian_stats_of_samples_give_the_known_distance():
    rng = np.random.default_rng(1)
    d = 4
    x = rng.standard_normal((20000, d))
    y = rng.standard_normal((20000, d)) * 2.0 + 1.0  # N(1, 4 I)
    # exact: |1|^2 * d + d (1 + 4 - 2 * 2) = d + d = 8
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(8.0, rel=0.05)


def _direct_mmd2(x, y):
    d = x.shape[1]

    def k(a, b):
        return (sum(float(ai) * float(bi) for ai, bi in zip(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_direct_formula():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.5
    # subsets as large as both sets: the plain unbiased estimate, once
    mean, std, size = kid(x, y, n_subsets=5, subset_size=1000)
    assert size == 6 and std == 0.0
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-10)
    # subsets: the mean over random subsets of the estimate on each subset
    mean, std, size = kid(x, y, n_subsets=2, subset_size=4, seed=3)
    sub = np.random.default_rng([3, 0x41D])
    vals = []
    for _ in range(2):
        xi = x[sub.choice(6, 4, replace=False)]
        yi = y[sub.choice(6, 4, replace=False)]
        vals.append(_direct_mmd2(xi, yi))
    assert size == 4 and mean == pytest.approx(np.mean(vals), rel=1e-10) and std == pytest.approx(np.std(vals))
    big = kid(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) + 3.0, n_subsets=3)[0]
    same = kid(rng.standard_normal((40, 3)), rng.standard_normal((40, 3)), n_subsets=3)[0]
    assert big > 10 * abs(same)


# ------------------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def random_inception():
    return I.build_inception(None, seed=0)


def test_inception_random_weights_shape_and_determinism(random_inception, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def no_network(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(tfi, "load_state_dict_from_url", no_network)
    imgs = torch.randint(0, 256, (2, 3, 37, 41), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f1 = I.features(random_inception, imgs)
    assert f1.shape == (2, I.FEATURE_DIM) and f1.dtype == torch.float64 and torch.isfinite(f1).all()
    again = I.build_inception(None, seed=0)  # does not download (patched above)
    assert torch.equal(I.features(again, imgs), f1)
    assert not torch.equal(I.features(I.build_inception(None, seed=1), imgs), f1)
    assert not torch.equal(f1[0], f1[1])
    with pytest.raises(ValueError):
        I.features(random_inception, imgs.float())


def test_inception_weights_file_is_loaded_safely(random_inception, tmp_path, monkeypatch):
    path = tmp_path / I.WEIGHTS_FILE
    torch.save(random_inception.state_dict(), path)
    net, wid = I.load_inception(path)
    imgs = torch.full((1, 3, 20, 20), 128, dtype=torch.uint8)
    assert torch.equal(I.features(net, imgs), I.features(random_inception, imgs))
    assert len(wid) == 16
    # env var and hub cache are found too
    monkeypatch.setenv(I.ENV_VAR, str(path))
    assert I.find_weights() == path
    monkeypatch.delenv(I.ENV_VAR)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match=I.WEIGHTS_FILE):
        I.find_weights()
    (tmp_path / "hub" / "checkpoints" / I.WEIGHTS_FILE).write_bytes(path.read_bytes())
    assert I.find_weights() == tmp_path / "hub" / "checkpoints" / I.WEIGHTS_FILE
    # other weights (wrong keys) are refused, not silently used
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="do not match"):
        I.load_inception(bad)


def test_eval_fid_without_weights_exits_2_naming_the_file(micro_model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(I.ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for metric in ("fid", "kid"):
        rc, out, err = run(capsys, "eval", "--metric", metric, "--model", micro_model_file, "--num", 2,
                           "--device", "cpu", "--quiet")
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and I.WEIGHTS_FILE in lines[0] and str(tmp_path / "hub") in lines[0]
        assert out == ""


def _real_weights():
    try:
        return I.find_weights()
    except UserError:
        return None


@pytest.mark.skipif(_real_weights() is None,
                    reason=f"the Inception weights {I.WEIGHTS_FILE} are not on this machine (no download here); "
                           f"put them in torch's hub cache or set {I.ENV_VAR} to run this test")
def test_fid_with_the_real_inception_weights():
    from infinitygan.data.procedural import ProceduralLandscapes

    net, _ = I.load_inception()
    ds = ProceduralLandscapes(size=64)
    real = lambda idx: P.quantize(torch.stack([ds[i] for i in idx]))  # noqa: E731
    a, b = I.features(net, real(range(0, 12))).numpy(), I.features(net, real(range(12, 24))).numpy()
    noise = I.features(net, torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8)).numpy()
    assert a.shape == (12, 2048) and (a >= 0).all()  # pool3 features follow a ReLU
    real_fid = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    noise_fid = frechet_distance(*gaussian_stats(a), *gaussian_stats(noise))
    assert 0 < real_fid < noise_fid / 2


# ------------------------------------------------------------------------------ protocol
def test_resize_modes_sizes_and_their_difference():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for mode in P.RESIZE_MODES:
        assert P.resize(x, 8, mode).shape == (2, 3, 8, 8)
        assert P.resize(x, 64, mode) is x
    # paper: bilinear with align_corners=True keeps the corner pixels exactly
    y = P.resize(x, 8, "paper")
    assert torch.equal(y[..., 0, 0], x[..., 0, 0]) and torch.equal(y[..., -1, -1], x[..., -1, -1])
    # an 8x downsampling of a fine checkerboard: the antialiased resize averages it to grey,
    # the aliased paper resize keeps full-contrast pixels
    r = torch.arange(64)
    board = ((r[:, None] + r[None, :]) % 2).float().mul(2).sub(1).expand(1, 3, 64, 64)
    assert P.resize(board, 8, "clean").abs().max() < 0.1
    assert P.resize(board, 8, "paper").abs().max() > 0.9
    with pytest.raises(ValueError):
        P.resize(x, 8, "nearest")


def test_quantize_roundtrip():
    u = torch.randint(0, 256, (1, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(P.quantize(P.to_unit(u)), u)


def test_placements_sizes_and_vertical_distribution():
    cfg = load_config("tiny")
    F, cell = cfg.training.full_size, 2 ** cfg.generator.n_up
    V = cfg.generator.coords.train_vertical_positions
    for scale in (1, 2, 4, 8):
        views = P.placements(cfg, 400, scale, seed=5)
        assert len(views) == 400 and all(v.size == scale * F for v in views)
        centres = np.array([v.y + v.size / 2 - 2 for v in views])  # offset from the horizon row
        assert centres.min() >= -V / 2 * cell - 1 and centres.max() <= V / 2 * cell + 1
        assert centres.min() < -0.8 * V / 2 * cell and centres.max() > 0.8 * V / 2 * cell  # spread
        assert len({v.seed for v in views}) == 400 and len({v.x for v in views}) == 400
    one, eight = P.placements(cfg, 20, 1, 5), P.placements(cfg, 20, 8, 5)
    for a, b in zip(one, eight):  # the same centres and seeds at every scale
        assert a.seed == b.seed
        assert abs((a.y + a.size / 2) - (b.y + b.size / 2)) <= 1
        assert abs((a.x + a.size // 2) - (b.x + b.size // 2)) <= 1
    assert P.placements(cfg, 20, 1, 6) != one
    # periodic vertical coordinates: the whole period
    tex = cfg.generator.coords.__class__(system="texture", period=cfg.generator.coords.period)
    lo, hi = P.vertical_offset_range(tex, cfg.generator.n_up)
    assert (lo, hi) == (0.0, tex.period * cell)


def test_protocol_sizes_default_to_the_pre_resize():
    cfg = load_config("tiny")
    assert P.EvalProtocol.of(cfg) == P.EvalProtocol(full_size=197, reference_size=128, patch_size=101)
    assert P.EvalProtocol.of(cfg, reference_size=197).reference_size == 197
    cfg.training.pre_resize = None
    assert P.EvalProtocol.of(cfg).reference_size == 197
    proto = P.EvalProtocol(full_size=197, reference_size=128, patch_size=101)
    assert [proto.generated_size(c) for c in (P.PATCH, 1, 2, 8)] == [101, 197, 394, 1576]
    assert [proto.compared_size(c) for c in (P.PATCH, 1, 2, 8)] == [101, 128, 128, 128]


def test_fake_views_are_the_engine_regions_resized(tiny_model):
    cfg = tiny_model.config
    F, R = cfg.training.full_size, cfg.training.pre_resize
    assert (F, R) == (197, 128)
    views = P.placements(cfg, 2, 1, seed=0) + P.placements(cfg, 1, 2, seed=0)
    # default: downsampled to the reference size (the pre-resize), 1x included (197 -> 128)
    batches = list(P.fake_batches(tiny_model, views, "cpu", ("paper", "clean"), batch=2))
    assert [b["paper"].shape for b in batches] == [(2, 3, R, R), (1, 3, R, R)]
    assert all(b["paper"].dtype == torch.uint8 for b in batches)
    v = views[0]
    one = torch.from_numpy(tiny_model.generate(v.seed, F, F, x=v.x, y=v.y)).permute(2, 0, 1)[None]
    for mode in ("paper", "clean"):
        assert torch.equal(batches[0][mode][:1], P.quantize(P.resize(one, R, mode)))
    assert not torch.equal(batches[0]["paper"], batches[0]["clean"])
    # 2x: the (2F)^2 region downsampled to R, differently by the two modes
    v = views[2]
    big = torch.from_numpy(tiny_model.generate(v.seed, 2 * F, 2 * F, x=v.x, y=v.y)).permute(2, 0, 1)[None]
    assert torch.equal(batches[1]["paper"], P.quantize(P.resize(big, R, "paper")))
    assert torch.equal(batches[1]["clean"], P.quantize(P.resize(big, R, "clean")))
    assert not torch.equal(batches[1]["paper"], batches[1]["clean"])
    # compared at the full size: the 1x region itself (a composite of the engine's tiles), only quantized
    full = next(P.fake_batches(tiny_model, views[:1], "cpu", ("paper", "clean"), size=F))
    assert torch.equal(full["paper"], P.quantize(one)) and torch.equal(full["clean"], P.quantize(one))


def test_patch_views_and_real_crops(tiny_model):
    """The training-resolution column: P x P regions of the generator, not resized, centred like
    the 1x views; P x P crops of the preprocessed real full images, at seeded uniform positions."""
    from infinitygan.data.datasets import open_dataset

    cfg = tiny_model.config
    F, Pz = cfg.training.full_size, cfg.generator.patch_size
    views = P.placements(cfg, 2, 1, seed=4, size=Pz)
    ones = P.placements(cfg, 2, 1, seed=4)
    for p, o in zip(views, ones):
        assert p.size == Pz and p.seed == o.seed
        assert abs((p.y + Pz / 2) - (o.y + F / 2)) <= 1 and abs((p.x + Pz // 2) - (o.x + F // 2)) <= 1
    b = next(P.fake_batches(tiny_model, views, "cpu", ("paper", "clean"), size=Pz))
    v = views[1]
    expect = P.quantize(torch.from_numpy(tiny_model.generate(v.seed, Pz, Pz, x=v.x, y=v.y)).permute(2, 0, 1))
    assert b["paper"].shape == (2, 3, Pz, Pz) and torch.equal(b["paper"][1], expect)
    ds = open_dataset("procedural", 64, 32, seed=0)
    idx = np.array([5, 2, 9, 7])
    crops = torch.cat(list(P.real_patch_batches(ds, idx, 21, seed=3, batch=3)))
    assert crops.shape == (4, 3, 21, 21) and crops.dtype == torch.uint8
    positions = []
    for k, j in enumerate(idx):
        r, c = P.crop_position(64, 21, 3, int(j))
        assert 0 <= r <= 64 - 21 and 0 <= c <= 64 - 21
        positions.append((r, c))
        full = torch.from_numpy(np.array(ds.load_uint8(int(j)))).permute(2, 0, 1)  # the training images (pre-resized, back to 64)
        assert torch.equal(crops[k], full[:, r:r + 21, c:c + 21])
    assert len(set(positions)) > 1
    assert P.crop_position(64, 21, 3, 5) == P.crop_position(64, 21, 3, 5) != P.crop_position(64, 21, 4, 5)


def test_reals_are_at_the_reference_size_not_upsampled():
    """The real images at R are the data's preprocessing stopped at R: for the procedural data
    (rendered at F, pre-resized to R) the pre-resized image itself, not the F image shrunk."""
    from PIL import Image

    from infinitygan.data.datasets import open_dataset
    from infinitygan.data.procedural import render_landscape

    ds = open_dataset("procedural", 64, 24, seed=0)
    idx = np.array([3, 0])
    reals = torch.cat(list(P.real_batches(ds, idx, size=24)))
    assert reals.shape == (2, 3, 24, 24) and reals.dtype == torch.uint8
    for k, j in enumerate(idx):
        photo = Image.fromarray(render_landscape(ds.image_seed(int(j)), 64, 64))
        pre = np.asarray(photo.resize((24, 24), Image.Resampling.LANCZOS))
        assert np.array_equal(reals[k].permute(1, 2, 0).numpy(), pre)
        trained = ds.load_uint8(int(j))  # what training sees: 24 -> 64
        assert trained.shape == (64, 64, 3)
        shrunk = np.asarray(Image.fromarray(trained).resize((24, 24), Image.Resampling.LANCZOS))
        assert not np.array_equal(shrunk, pre)
    # without a size: the full images
    assert next(P.real_batches(ds, idx)).shape == (2, 3, 64, 64)


def test_real_indices_distinct_and_disjoint():
    a = P.real_indices(1000, 50, seed=0)
    b = P.real_indices(1000, 50, seed=1, exclude=a)
    assert len(set(a)) == 50 and len(set(b)) == 50 and not set(a) & set(b)
    assert np.array_equal(a, P.real_indices(1000, 50, seed=0))
    assert len(P.real_indices(10, 50, seed=0)) == 10


# ------------------------------------------------------------------------------ reference cache
def test_reference_features_are_cached(random_inception, tmp_path, monkeypatch):
    from infinitygan.data.procedural import ProceduralLandscapes

    ds = ProceduralLandscapes(size=24)
    real = E.RealSet("procedural", ds, 3, seed=0)
    f1 = real.features(random_inception, "w0", "paper", tmp_path, "cpu")
    files = list((tmp_path / "fid-ref").glob("*.npz"))
    assert f1.shape == (3, 2048) and len(files) == 1
    calls = []
    monkeypatch.setattr(I, "features", lambda *a, **k: calls.append(1))
    f2 = E.RealSet("procedural", ds, 3, seed=0).features(random_inception, "w0", "paper", tmp_path, "cpu")
    assert np.array_equal(f1, f2) and not calls  # from the cache
    # other weights, resize mode or set: a different entry
    monkeypatch.undo()
    E.RealSet("procedural", ds, 3, seed=0).features(random_inception, "w1", "paper", tmp_path, "cpu")
    E.RealSet("procedural", ds, 3, seed=0).features(random_inception, "w0", "clean", tmp_path, "cpu")
    E.RealSet("procedural", ds, 3, seed=9).features(random_inception, "w0", "paper", tmp_path, "cpu")
    assert len(list((tmp_path / "fid-ref").glob("*.npz"))) == 4


def test_evaluate_fid_kid_with_a_random_extractor(tiny_model, random_inception, tmp_path, monkeypatch):
    """The FID/KID path end to end (random weights stand in for the real ones)."""
    monkeypatch.setattr(I, "load_inception", lambda w=None: (random_inception, "random"))
    small = tiny_model.__class__(tiny_model.generator, tiny_model.config)
    rows = list(E.evaluate(small, "procedural", "fid", [1], ["paper"], 3, cache_dir=tmp_path))
    assert [(r["metric"], r["scale"], r["resize"]) for r in rows] == [("fid", 1, "paper")]
    assert math.isfinite(rows[0]["value"]) and rows[0]["value"] > 0
    rows = list(E.evaluate(small, "procedural", "kid", [1], ["paper"], 3, cache_dir=tmp_path, floor=True))
    assert rows[0]["model"] == "real (floor)" and math.isfinite(rows[0]["value"]) and rows[0]["subset_size"] == 3


# ------------------------------------------------------------------------------ the command
def test_eval_swd_scales_modes_csv_and_floor(micro_model_file, tmp_path, capsys):
    out_csv = tmp_path / "t.csv"
    rc, out, err = run(capsys, "eval", "--metric", "swd", "--model", micro_model_file, "--num", 3,
                       "--scale", "1,2", "--resize", "paper,clean", "--seed", 3, "--device", "cpu", "--quiet",
                       "--csv", out_csv)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [(r["scale"], r["resize"]) for r in rows] == [(1, "paper"), (1, "clean"), (2, "paper"), (2, "clean")]
    for r in rows:
        assert r["metric"] == "swd" and r["num_fake"] == 3 and r["num_real"] == 3 and r["full_size"] == 33
        assert r["generated_size"] == 33 * r["scale"] and math.isfinite(r["value"]) and r["value"] > 0
        assert r["reference_size"] == r["compared_size"] == 33  # no pre-resize: the full size
    assert rows[0]["value"] == rows[1]["value"]  # 1x: no resize, the two modes agree
    assert rows[2]["value"] != rows[3]["value"]
    table = list(csv.DictReader(out_csv.open()))
    assert [float(t["value"]) for t in table] == [r["value"] for r in rows]
    assert [int(t["compared_size"]) for t in table] == [33] * 4
    # deterministic
    rc, out2, _ = run(capsys, "eval", "--metric", "swd", "--model", micro_model_file, "--num", 3,
                      "--scale", "1", "--seed", 3, "--device", "cpu", "--quiet")
    assert json.loads(out2)["value"] == rows[0]["value"]
    rc, out, err = run(capsys, "eval", "--metric", "swd", "--model", micro_model_file, "--num", 3,
                       "--floor", "--device", "cpu", "--quiet")
    floor = json.loads(out)
    assert rc == 0 and floor["model"] == "real (floor)" and 0 < floor["value"]


@pytest.mark.parametrize("args,needle", [
    (["--scale", "0"], "--scale"),
    (["--scale", "1,x"], "--scale"),
    (["--resize", "nearest"], "--resize"),
    (["--num", "1"], "--num"),
    (["--csv", "/nonexistent-dir/t.csv"], "--csv"),
    (["--scale", "patches"], "--scale"),
    (["--reference-size", "0"], "--reference-size"),
    (["--reference-size", "8"], "reference size"),
    (["--reference-size", "40"], "reference size"),
])
def test_eval_bad_input_exits_2(micro_model_file, capsys, args, needle):
    rc, out, err = run(capsys, "eval", "--model", micro_model_file, "--device", "cpu", *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("infinitygan: error: ") and needle in lines[0]


class _SizeSpy:
    """Records the image sizes each side of every SWD accumulator receives."""

    def __init__(self, monkeypatch):
        from infinitygan.metrics import swd

        self.seen = []
        spy = self
        base = swd.SWDAccumulator

        class Recording(base):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.sizes = {"real": set(), "fake": set()}
                spy.seen.append(self.sizes)

            def add_real(self, batch):
                self.sizes["real"].add(tuple(batch.shape[-2:]))
                super().add_real(batch)

            def add_fake(self, batch):
                self.sizes["fake"].add(tuple(batch.shape[-2:]))
                super().add_fake(batch)

        monkeypatch.setattr(swd, "SWDAccumulator", Recording)


def test_eval_compares_at_the_reference_size_and_the_patch(micro_pre_model_file, monkeypatch, capsys):
    """pre_resize 24: the N x columns see 24-pixel reals and N x 33-pixel views brought to 24; the
    patch column sees 17-pixel views and 17-pixel crops; --reference-size overrides R."""
    spy = _SizeSpy(monkeypatch)
    rc, out, err = run(capsys, "eval", "--metric", "swd", "--model", micro_pre_model_file, "--num", 3,
                       "--scale", "patch,1,2", "--resize", "paper,clean", "--device", "cpu", "--quiet")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [(r["scale"], r["resize"]) for r in rows] == [
        ("patch", "paper"), ("patch", "clean"), (1, "paper"), (1, "clean"), (2, "paper"), (2, "clean")]
    assert [(r["generated_size"], r["compared_size"]) for r in rows] == [(17, 17)] * 2 + [(33, 24)] * 2 + [(66, 24)] * 2
    assert all(r["reference_size"] == 24 and r["full_size"] == 33 for r in rows)
    assert rows[0]["value"] == rows[1]["value"]  # patches are not resized
    assert rows[2]["value"] != rows[3]["value"]  # 1x is resized 33 -> 24 now
    # the accumulators: one for the patch column, one per mode for 1x and 2x
    assert spy.seen == [{"real": {(17, 17)}, "fake": {(17, 17)}}] + [{"real": {(24, 24)}, "fake": {(24, 24)}}] * 4
    # an explicit reference size
    spy.seen.clear()
    rc, out, err = run(capsys, "eval", "--metric", "swd", "--model", micro_pre_model_file, "--num", 3,
                       "--scale", "1", "--reference-size", 33, "--device", "cpu", "--quiet")
    row = json.loads(out)
    assert rc == 0 and (row["reference_size"], row["compared_size"]) == (33, 33)
    assert spy.seen == [{"real": {(33, 33)}, "fake": {(33, 33)}}]
    # floors: two disjoint real sets at R, and of crops at P
    rc, out, err = run(capsys, "eval", "--metric", "swd", "--model", micro_pre_model_file, "--num", 3,
                       "--scale", "1,patch", "--floor", "--device", "cpu", "--quiet")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert rc == 0 and [(r["scale"], r["compared_size"]) for r in rows] == [(1, 24), ("patch", 17)]
    assert all(r["model"] == "real (floor)" and r["value"] > 0 for r in rows)


def test_reference_real_set_is_the_pre_resized_images(micro_pre_model_file):
    """What evaluate compares the N x views with: the real set at R, the procedural images'
    pre-resized stage, from the dataset the model trains on."""
    from infinitygan.api import load_model
    from infinitygan.data.datasets import open_dataset

    model = load_model(micro_pre_model_file)
    ds = open_dataset("procedural", 33, 24, seed=0)
    real = E.RealSet("procedural", ds, 3, seed=0, size=24)
    assert real.images.shape == (3, 3, 24, 24)
    for k, j in enumerate(real.indices):
        assert np.array_equal(real.images[k].permute(1, 2, 0).numpy(), ds.load_uint8(int(j), 24))
    patch = E.RealSet("procedural", ds, 3, seed=0, patch=model.config.generator.patch_size)
    assert patch.images.shape == (3, 3, 17, 17)


def test_eval_on_an_lmdb_without_the_reference_size_exits_2(micro_pre_model_file, tmp_path, capsys, monkeypatch):
    """A pack holds only its full size (33): the N x columns need 24-pixel reals, refused in one
    line naming the fix, before anything is printed; a pack at 24 serves them."""
    pytest.importorskip("lmdb")
    from PIL import Image

    from infinitygan.data.lmdb_pack import prepare_lmdb

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    prepare_lmdb(folder, tmp_path / "full.lmdb", full_size=33, pre_resize=24, progress=False)
    rc, out, err = run(capsys, "eval", "--model", micro_pre_model_file, "--data", tmp_path / "full.lmdb",
                       "--num", 3, "--scale", "patch,1", "--device", "cpu", "--quiet")
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1 and "--full-size 24" in lines[0]
    # the patch column alone uses the full-size pack
    rc, out, err = run(capsys, "eval", "--model", micro_pre_model_file, "--data", tmp_path / "full.lmdb",
                       "--num", 3, "--scale", "patch", "--device", "cpu", "--quiet")
    assert rc == 0 and json.loads(out)["compared_size"] == 17
    # a pack at the reference size: its images are the N x columns' reals; the patch column is refused
    prepare_lmdb(folder, tmp_path / "ref.lmdb", full_size=24, pre_resize=24, progress=False)
    spy = _SizeSpy(monkeypatch)
    rc, out, err = run(capsys, "eval", "--model", micro_pre_model_file, "--data", tmp_path / "ref.lmdb",
                       "--num", 3, "--scale", "1", "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert json.loads(out)["compared_size"] == 24 and spy.seen == [{"real": {(24, 24)}, "fake": {(24, 24)}}]
    rc, out, err = run(capsys, "eval", "--model", micro_pre_model_file, "--data", tmp_path / "ref.lmdb",
                       "--num", 3, "--scale", "patch", "--device", "cpu", "--quiet")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--full-size 33" in err
    prepare_lmdb(folder, tmp_path / "odd.lmdb", full_size=30, progress=False)
    rc, out, err = run(capsys, "eval", "--model", micro_pre_model_file, "--data", tmp_path / "odd.lmdb",
                       "--num", 3, "--device", "cpu", "--quiet")
    assert rc == 2 and "30px" in err and len(err.strip().splitlines()) == 1
