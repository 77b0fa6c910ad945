"""The Inception feature extractor (metrics.inception): random weights for tests, a weights file loaded
safely, eval without weights, and the real weights where they are installed. Fixtures: test_metrics."""
from __future__ import annotations

import pytest
import torch

from infinitygan.errors import UserError
from infinitygan.metrics import inception as I
from infinitygan.metrics import protocol as P
from infinitygan.metrics.fid import frechet_distance, gaussian_stats

from test_metrics import _modest_cpu, micro_model_file, random_inception, run  # noqa: F401 (fixtures)


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
