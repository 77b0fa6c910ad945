"""Training on each kind of data (training.loop with infinitygan.data): small and few-shot folders,
tiny, corrupt and grayscale images, LMDB packs, and the resumable sampler's positions. Helpers and
the micro config: test_training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from infinitygan.config import load_config

from test_training import FAST, ckpt_meta, ckpts, micro, one_thread, run, train  # noqa: F401 (fixtures)


def _photos(folder: Path, n: int, seed: int = 0, size=(40, 50)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_small_dataset_passes_and_resume(tmp_path, micro):
    """A 5-image folder, batches of 4: batches run across passes over the data; resume still exact."""
    folder = _photos(tmp_path / "imgs", 5)
    cfg = load_config(micro)
    kw = dict(FAST, samples=False, checkpoint_every=100)
    train(cfg, str(folder), tmp_path / "a", iterations=4, **kw)
    train(cfg, str(folder), tmp_path / "b", iterations=2, **kw)
    train(cfg, str(folder), tmp_path / "b", iterations=4, resume=True, **kw)
    A = load_file(str(tmp_path / "a" / "checkpoints" / "ckpt-00000004.safetensors"))
    B = load_file(str(tmp_path / "b" / "checkpoints" / "ckpt-00000004.safetensors"))
    assert all(torch.equal(A[k], B[k]) for k in A)
    # 4 iterations x 4 images = 16 = 3 whole passes over 5 images (+ 1)
    assert json.loads(ckpt_meta(tmp_path / "a" / "checkpoints" / "ckpt-00000004.safetensors")["progress"])["passes"] == 3


def test_few_shot_folder_smaller_than_a_batch_trains(tmp_path, micro, capsys):
    """3 photos, batch 4 (the 11-photos-batch-16 case): trains, one warning line."""
    folder = _photos(tmp_path / "few", 3)
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 3, "--out",
                     tmp_path / "run", "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert warned == ["infinitygan: warning: 3 images, fewer than one batch of 4: images repeat within batches "
                      "(few-shot training)"], err
    assert ckpts(tmp_path / "run")[-1] == "ckpt-00000003.safetensors"


def test_tiny_images_are_skipped_with_one_warning(tmp_path, micro, capsys):
    """1x1 and 20x30 images are not upsampled into the data: one line for all of them, also with
    loader workers."""
    folder = _photos(tmp_path / "mixed", 4)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "dot.png")
    Image.new("RGB", (30, 20), (10, 200, 10)).save(folder / "small.png")
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 1, "--out",
                     tmp_path / "run", "--workers", 1, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and "skipped 2 images smaller than 32 px" in warned[0], err
    from infinitygan.data.datasets import open_dataset

    with pytest.warns(UserWarning):
        assert len(open_dataset(str(folder), 33)) == 4


def test_sampler_positions_are_arithmetic_and_split_between_ranks():
    """Batch t of the stream is positions [tB, (t+1)B); rank r takes every W-th; starting at t
    gives exactly the tail of the stream from 0."""
    from itertools import islice

    from infinitygan.data.sampling import ResumableSampler

    n, B = 7, 4
    whole = list(islice(iter(ResumableSampler(n, B, seed=3)), 5 * B))
    assert sorted(i for q, i in whole[:n]) == list(range(n))  # pass 0 is a permutation
    assert [q for q, _ in whole] == [p // n for p in range(5 * B)]
    later = list(islice(iter(ResumableSampler(n, B, seed=3, start_iteration=2)), 3 * B))
    assert later == whole[2 * B:]
    shares = [list(islice(iter(ResumableSampler(n, B, seed=3, rank=r, world_size=2)), 2 * 2)) for r in (0, 1)]
    for t in range(2):
        batch = whole[t * B:(t + 1) * B]
        assert shares[0][2 * t:2 * t + 2] == batch[0::2] and shares[1][2 * t:2 * t + 2] == batch[1::2]


# ------------------------------------------------------------------------------------ data
def test_folder_with_corrupt_and_grayscale_files(tmp_path, micro, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"rgb{i}.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(folder / "gray.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "--config", micro, "--data", folder, "--iterations", 2, "--out", out,
                     "--workers", 0, "--device", "cpu", "--quiet")
    assert rc == 0, err
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and warned[0].startswith("infinitygan: warning: skipped 1 unreadable"), err
    assert ckpts(out)[-1] == "ckpt-00000002.safetensors"


def test_prepare_lmdb_and_train_on_it(tmp_path, micro, capsys):
    pytest.importorskip("lmdb")
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    db = tmp_path / "data.lmdb"
    rc, _, err = run(capsys, "prepare", folder, "--out", db, "--full-size", 33, "--pre-resize", 0, "--quiet")
    assert rc == 0, err
    assert (db / "data.mdb").is_file()
    rc, _, err = run(capsys, "prepare", folder, "--out", db, "--full-size", 33, "--quiet")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "train", "--config", micro, "--data", db, "--iterations", 1, "--out", tmp_path / "run",
                     "--workers", 2, "--device", "cpu", "--quiet")
    assert rc == 0, err
