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
    from infinitygan.training.procedural import ProceduralLandscapes

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


def test_fake_views_are_the_engine_regions_resized(tiny_model):
    cfg = tiny_model.config
    F = cfg.training.full_size
    views = P.placements(cfg, 2, 1, seed=0) + P.placements(cfg, 1, 2, seed=0)
    batches = list(P.fake_batches(tiny_model, views, "cpu", ("paper", "clean"), batch=2))
    assert [b["paper"].shape for b in batches] == [(2, 3, F, F), (1, 3, F, F)]
    assert all(b["paper"].dtype == torch.uint8 for b in batches)
    # 1x: the full-size region itself (a composite of the engine's tiles), only quantized
    v = views[0]
    img = tiny_model.generate(v.seed, F, F, x=v.x, y=v.y)
    expect = P.quantize(torch.from_numpy(img).permute(2, 0, 1)[None])
    assert torch.equal(batches[0]["paper"][:1], expect) and torch.equal(batches[0]["clean"][:1], expect)
    # 2x: the (2F)^2 region downsampled, differently by the two modes
    v = views[2]
    big = torch.from_numpy(tiny_model.generate(v.seed, 2 * F, 2 * F, x=v.x, y=v.y)).permute(2, 0, 1)[None]
    assert torch.equal(batches[1]["paper"], P.quantize(P.resize(big, F, "paper")))
    assert torch.equal(batches[1]["clean"], P.quantize(P.resize(big, F, "clean")))
    assert not torch.equal(batches[1]["paper"], batches[1]["clean"])


def test_real_indices_distinct_and_disjoint():
    a = P.real_indices(1000, 50, seed=0)
    b = P.real_indices(1000, 50, seed=1, exclude=a)
    assert len(set(a)) == 50 and len(set(b)) == 50 and not set(a) & set(b)
    assert np.array_equal(a, P.real_indices(1000, 50, seed=0))
    assert len(P.real_indices(10, 50, seed=0)) == 10


# ------------------------------------------------------------------------------ reference cache
def test_reference_features_are_cached(random_inception, tmp_path, monkeypatch):
    from infinitygan.training.procedural import ProceduralLandscapes

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
    assert rows[0]["value"] == rows[1]["value"]  # 1x: no resize, the two modes agree
    assert rows[2]["value"] != rows[3]["value"]
    table = list(csv.DictReader(out_csv.open()))
    assert [float(t["value"]) for t in table] == [r["value"] for r in rows]
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
])
def test_eval_bad_input_exits_2(micro_model_file, capsys, args, needle):
    rc, out, err = run(capsys, "eval", "--model", micro_model_file, "--device", "cpu", *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("infinitygan: error: ") and needle in lines[0]
