"""The reference features' cache and FID/KID of a model (metrics.evaluate) and the eval command
(metrics.cli); the fixtures the other metrics tests share. FID / KID: test_metrics_fid; Inception:
test_metrics_inception; the protocol: test_metrics_protocol."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml

from infinitygan.cli import main
from infinitygan.metrics import evaluate as E
from infinitygan.metrics import inception as I

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


# ------------------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def random_inception():
    return I.build_inception(None, seed=0)


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
