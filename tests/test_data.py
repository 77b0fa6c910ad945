"""Tests for training data: folders, LMDB packing, preprocessing, patches, loaders."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from infinitygan.errors import UserError
from infinitygan.data.datasets import open_dataset
from infinitygan.data.folder import ImageFolderDataset
from infinitygan.data.lmdb_pack import LMDBDataset, prepare_lmdb
from infinitygan.data.patches import PatchDataset, random_patch
from infinitygan.data.preprocess import list_images, preprocess
from infinitygan.data.sampling import endless_batches
from infinitygan.data.procedural import ProceduralLandscapes

F = 37  # small "full size" keeps the tests fast


def _rand_img(seed, size, mode="RGB"):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    _rand_img(0, (60, 40)).save(root / "a.png")
    _rand_img(1, (50, 50)).save(root / "sub" / "b.JPG", quality=95)
    _rand_img(2, (34, 45), "L").save(root / "c_gray.png")
    _rand_img(3, (64, 64), "RGBA").save(root / "d.webp")
    (root / "e_corrupt.jpg").write_bytes(b"this is not an image at all")
    (root / "notes.txt").write_text("ignored")
    return root


def test_list_images(folder):
    names = [p.name for p in list_images(folder)]
    assert names == ["a.png", "c_gray.png", "d.webp", "e_corrupt.jpg", "b.JPG"]


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(UserError):
        open_dataset(str(tmp_path / "nope"))


def test_all_corrupt_is_user_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no usable images"):
        ImageFolderDataset(tmp_path, full_size=F)


def test_preprocess_modes_and_crop():
    for mode in ["RGB", "L", "RGBA", "P", "LA", "CMYK"]:
        x = preprocess(_rand_img(5, (80, 50), mode), F, None)
        assert x.shape == (3, F, F) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    # center crop: a wide image with a bright central square
    arr = np.zeros((40, 120, 3), np.uint8)
    arr[:, 40:80] = 255
    x = preprocess(Image.fromarray(arr), 20, None)
    assert x.min() > 0.9
    # pre-resize path and upsampling of small images
    assert preprocess(_rand_img(6, (300, 200)), F, 16).shape == (3, F, F)
    assert preprocess(_rand_img(7, (10, 10)), F, None).shape == (3, F, F)
    # grayscale stays gray in all channels
    g = preprocess(_rand_img(8, (20, 20), "L"), 20, None)
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])


def test_load_uint8_at_another_size_stops_the_chain_there(folder):
    """load_uint8(i, S): the same preprocessing ending at S; S = pre_resize: the pre-resized image
    (the evaluation's reference images), not the full image shrunk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ImageFolderDataset(folder, full_size=F, pre_resize=24)
    i = [p.name for p in ds.files].index("a.png")
    with Image.open(ds.files[i]) as im:
        sq = im.convert("RGB").crop((10, 0, 50, 40))  # 60x40: the centre 40x40 square
        pre = np.asarray(sq.resize((24, 24), Image.Resampling.LANCZOS))
    assert np.array_equal(ds.load_uint8(i, 24), pre)
    assert np.array_equal(ds.load_uint8(i), np.asarray(Image.fromarray(pre).resize((F, F), Image.Resampling.LANCZOS)))
    assert ds.load_uint8(i, 24).shape == (24, 24, 3)


def test_folder_dataset(folder):
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = ImageFolderDataset(folder, full_size=F)
    assert ds.skipped == 1 and len(ds) == 4
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, F, F) and x.dtype == torch.float32
        assert -1 <= x.min() and x.max() <= 1
    gray_idx = [p.name for p in ds.files].index("c_gray.png")
    g = ds[gray_idx]
    assert torch.equal(g[0], g[1]) and torch.equal(g[0], g[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(open_dataset(str(folder), full_size=F), ImageFolderDataset)


def test_open_dataset_procedural_and_errors(tmp_path):
    ds = open_dataset("procedural", full_size=F, seed=2)
    assert isinstance(ds, ProceduralLandscapes) and ds[0].shape == (3, F, F)
    # pre_resize is honoured like a folder's: render at F, Lanczos to pre_resize, Lanczos back to F
    pre = open_dataset("procedural", full_size=F, pre_resize=16, seed=2)
    assert pre.pre_resize == 16 and pre[0].shape == (3, F, F)
    photo = Image.fromarray(ds.load_uint8(0))  # the rendered image (no pre_resize)
    expect = preprocess(photo, F, 16)
    assert torch.equal(pre[0], expect) and not torch.equal(pre[0], ds[0])
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError):
        open_dataset(str(f))


def test_lmdb_round_trip(folder, tmp_path):
    pytest.importorskip("lmdb")
    out = tmp_path / "pack.lmdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = prepare_lmdb(folder, out, full_size=F, pre_resize=24, progress=False)
        ref = ImageFolderDataset(folder, full_size=F, pre_resize=24)
    assert n == 4 and (out / "data.mdb").is_file()
    assert not any(p.name.startswith(".pack.lmdb.tmp") for p in tmp_path.iterdir())
    ds = open_dataset(str(out), full_size=F, pre_resize=24)
    assert isinstance(ds, LMDBDataset) and len(ds) == 4
    assert ds.meta["full_size"] == F and ds.meta["pre_resize"] == 24 and ds.meta["count"] == 4
    for i in range(4):
        assert torch.equal(ds[i], ref[i])
    # pickles without an open environment (DataLoader workers) and still reads
    import pickle

    ds2 = pickle.loads(pickle.dumps(ds))
    assert torch.equal(ds2[1], ref[1])
    with pytest.raises(UserError, match="already exists"):
        prepare_lmdb(folder, out, full_size=F, progress=False)
    with pytest.raises(UserError):
        LMDBDataset(out, full_size=F + 1)
    # a pack holds its full size only: another size is refused in one line
    assert np.array_equal(ds.load_uint8(0, F), ds.load_uint8(0))
    with pytest.raises(UserError, match="--full-size 24"):
        ds.load_uint8(0, 24)


def test_lmdb_bad_paths(tmp_path):
    pytest.importorskip("lmdb")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError):
        LMDBDataset(tmp_path / "d")
    f = tmp_path / "junk.bin"
    f.write_bytes(b"\0" * 100)
    with pytest.raises(UserError):
        LMDBDataset(f)
    with pytest.raises(UserError):
        open_dataset(str(tmp_path / "missing.lmdb"))


def test_random_patch_label_matches_offset():
    full, p = 197, 101  # 97 possible rows 0..96: label -1 at the top, 0 in the middle, 1 at the bottom
    expected = {0: -1.0, 24: -0.5, 48: 0.0, 72: 0.5, 96: 1.0}
    img = torch.arange(full * full, dtype=torch.float32).reshape(1, full, full).repeat(3, 1, 1)
    g = torch.Generator().manual_seed(0)
    flips, seen = 0, {}
    for _ in range(400):
        patch, label = random_patch(img, p, g)
        assert patch.shape == (3, p, p)
        row = int(patch[0, 0].min().item()) // full  # flip keeps rows; min of row 0 is its left pixel
        seen[row] = label
        flips += bool(patch[0, 0, 0] > patch[0, 0, -1])
    for row, label in expected.items():
        if row in seen:
            assert seen[row] == pytest.approx(label)
    assert sum(r in seen for r in expected) >= 3
    assert all(-1.0 <= v <= 1.0 for v in seen.values())
    labels = sorted(seen.items())
    assert all(a[1] < b[1] for a, b in zip(labels, labels[1:]))  # lower crops, larger labels
    assert 120 < flips < 280
    # no flip requested -> never flipped; a patch as large as the image has label 0
    patch, label = random_patch(img, full, g, flip=False)
    assert label == 0.0 and torch.equal(patch, img)
    g = torch.Generator().manual_seed(1)
    labels = [random_patch(img[:, :, :p], p, g, flip=False)[1] for _ in range(400)]
    assert min(labels) == -1.0 and max(labels) == 1.0


def test_patch_dataset_reproducible():
    base = ProceduralLandscapes(size=F, length=8, seed=1)
    a = PatchDataset(base, patch=21, seed=5)
    b = PatchDataset(base, patch=21, seed=5)
    pa, la = a[(3, 2)]
    pb, lb = b[(3, 2)]
    assert torch.equal(pa, pb) and torch.equal(la, lb)
    assert pa.shape == (3, 21, 21) and la.dtype == torch.float32 and la.shape == ()
    # different passes draw different crops (almost surely for some index)
    assert any(not torch.equal(a[(0, i)][0], a[(1, i)][0]) for i in range(8))


def _first_batches(patches, k, **kw):
    it = endless_batches(patches, **kw)
    return [next(it) for _ in range(k)]


def test_loader_worker_independent_and_endless():
    base = ProceduralLandscapes(size=F, length=6, seed=0)
    ds = PatchDataset(base, patch=21, seed=9)
    b0 = _first_batches(ds, 4, global_batch=3, workers=0, seed=4)  # 2 batches per pass over the 6 images
    b1 = _first_batches(ds, 4, global_batch=3, workers=1, seed=4)
    for (x0, y0), (x1, y1) in zip(b0, b1):
        assert x0.shape == (3, 3, 21, 21) and y0.shape == (3,) and y0.dtype == torch.float32
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    # pass 1 is a different pass than pass 0
    assert not all(torch.equal(b0[k][0], b0[k + 2][0]) for k in range(2))
    # starting at iteration 2 gives batches 2, 3 of the stream
    later = _first_batches(ds, 2, global_batch=3, workers=0, seed=4, start_iteration=2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(later, b0[2:]))


def test_loader_distributed_split_and_tiny_data():
    base = ProceduralLandscapes(size=F, length=8, seed=0)
    ds = PatchDataset(base, patch=21, seed=1)
    one = _first_batches(ds, 2, global_batch=4, workers=0, seed=1)
    two = [_first_batches(ds, 2, global_batch=4, workers=0, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for t in range(2):
        assert torch.equal(one[t][0][0::2], two[0][t][0]) and torch.equal(one[t][0][1::2], two[1][t][0])
    tiny = PatchDataset(ProceduralLandscapes(size=F, length=2, seed=0), patch=21)
    x, _ = _first_batches(tiny, 1, global_batch=5, workers=0)[0]  # fewer images than a batch: repeats
    assert x.shape[0] == 5


def test_lmdb_with_loader_workers(folder, tmp_path):
    pytest.importorskip("lmdb")
    out = tmp_path / "pack.lmdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_lmdb(folder, out, full_size=F, progress=False)
    ds = LMDBDataset(out)
    also = LMDBDataset(out)  # a second dataset on the same pack in the same process
    assert torch.equal(ds[0], also[0])  # env open in the parent before workers fork
    patches = PatchDataset(ds, patch=21, seed=0)
    runs = [_first_batches(patches, 3, global_batch=2, workers=workers, seed=0) for workers in (0, 2)]
    for (x0, y0), (x1, y1) in zip(*runs):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert torch.equal(ds[3], also[3])  # parent reopens after the fork


def test_truncated_file_falls_back_to_next(tmp_path):
    import io

    buf = io.BytesIO()
    _rand_img(0, (64, 64)).save(buf, format="JPEG", quality=95)
    (tmp_path / "a_trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    _rand_img(1, (40, 40)).save(tmp_path / "b.png")
    ds = ImageFolderDataset(tmp_path, full_size=F)
    with pytest.warns(UserWarning, match="could not decode"):
        x = ds[0]
    assert torch.equal(x, ds[1])


def test_batched_fetch_on_threads_equals_one_by_one():
    """PatchDataset.__getitems__ (the in-process loader's batched fetch) loads on one thread per
    intra-op thread; every item is a function of its key, so the batch is the same."""
    from infinitygan.data.patches import PatchDataset, _loading_threads
    from infinitygan.data.procedural import ProceduralLandscapes

    pd = PatchDataset(ProceduralLandscapes(size=48, length=50, seed=2, pre_resize=32), patch=24, seed=5)
    keys = [(0, i) for i in (3, 17, 4, 42, 0, 9)]
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _loading_threads() == 2
        threaded = pd.__getitems__(keys)
    finally:
        torch.set_num_threads(prev)
    for (p, l), k in zip(threaded, keys):
        p1, l1 = pd[k]
        assert torch.equal(p, p1) and torch.equal(l, l1)


def test_cpu_training_keeps_freed_memory():
    """glibc's malloc tuned for training (heap instead of fresh mappings, no trimming): a no-op
    returning False off glibc, idempotent."""
    import sys

    from infinitygan.training.options import keep_freed_memory

    ok = keep_freed_memory()
    assert keep_freed_memory() is ok
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            return
        assert ok
