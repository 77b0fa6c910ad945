"""Hostile input to the data room (issue 31): `prepare` replaces only what it wrote and never its
own input; damaged LMDB packs, a full disk and memory running out are one line (exit 2) and leave
nothing behind."""
from __future__ import annotations

import pytest

from infinitygan.cli import main

pytest.importorskip("lmdb")

from test_cli_bad_input import _refused  # noqa: E402  (one line, exit 2)




@pytest.fixture
def photos(tmp_path):
    """tmp_path/imgs with two 40x48 photos, and tmp_path/pack.lmdb prepared from them (F = 32)."""
    import numpy as np
    from PIL import Image

    from infinitygan.data.lmdb_pack import prepare_lmdb

    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (40, 48, 3), np.uint8)).save(tmp_path / f"imgs/{i}.png")
    prepare_lmdb(tmp_path / "imgs", tmp_path / "pack.lmdb", full_size=32, pre_resize=None, progress=False)
    return tmp_path


def _tree(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("out,where", [("imgs", "."), (".", "."), (".", "imgs"), ("..", "imgs/sub")])
def test_prepare_never_writes_over_its_own_input(photos, monkeypatch, capsys, out, where):
    """`prepare imgs --out imgs --overwrite` deleted the photos and exited 0."""
    (photos / "imgs" / "sub").mkdir()
    monkeypatch.chdir(photos / where)
    src = "imgs" if where == "." else "."
    before = _tree(photos)
    _refused(capsys, ["prepare", src, "--out", out, "--overwrite", "--quiet"], "image folder")
    assert _tree(photos) == before


def test_prepare_overwrite_replaces_only_its_own_lmdb(photos, monkeypatch, capsys):
    monkeypatch.chdir(photos)
    (photos / "mine").mkdir()
    (photos / "mine" / "notes.txt").write_text("keep me")
    (photos / "mine" / "data.mdb").write_bytes(b"not an lmdb")
    for target in ("mine", "imgs/0.png"):
        before = _tree(photos)
        _refused(capsys, ["prepare", "imgs", "--out", target, "--overwrite", "--quiet"], "written by `prepare`")
        assert _tree(photos) == before
    # an LMDB of prepare's beside a file of the user's: not prepare's alone any more
    (photos / "pack.lmdb" / "README").write_text("mine")
    _refused(capsys, ["prepare", "imgs", "--out", "pack.lmdb", "--overwrite", "--quiet"], "written by `prepare`")
    (photos / "pack.lmdb" / "README").unlink()
    old = (photos / "pack.lmdb" / "data.mdb").read_bytes()
    assert main(["prepare", "imgs", "--out", "pack.lmdb", "--overwrite", "--full-size", "40", "--quiet"]) == 0
    assert (photos / "pack.lmdb" / "data.mdb").read_bytes() != old
    from infinitygan.data.lmdb_pack import LMDBDataset

    assert LMDBDataset(photos / "pack.lmdb").full_size == 40


def _damaged(pack, meta: bytes | None = None, records: dict | None = None):
    import lmdb

    env = lmdb.open(str(pack), subdir=True, map_size=64 << 20)
    with env.begin(write=True) as txn:
        if meta is not None:
            txn.put(b"__meta__", meta)
        for k, v in (records or {}).items():
            txn.put(k, v)
    env.close()


@pytest.mark.parametrize("meta,records,needle", [
    (b"{not json", None, "not JSON"),
    (b"[1, 2]", None, "not a mapping"),
    (b'{"count": 1000000000000, "full_size": 32, "format": "png"}', None, "holds 2 records"),
    (b'{"count": 2, "full_size": "32", "format": "png"}', None, "full_size"),
    (None, {b"00000000": b"junk"}, "image 0 is not a readable"),
])
def test_a_damaged_lmdb_is_one_line_before_a_run_exists(photos, monkeypatch, capsys, meta, records, needle):
    """Its metadata not JSON, a list, claiming 10^12 images (the sampler's permutation would take
    8 TB), or a junk record (Pillow's message named a BytesIO object)."""
    monkeypatch.chdir(photos)
    _damaged(photos / "pack.lmdb", meta, records)
    line = _refused(capsys, ["train", "--data", "pack.lmdb", "--out", "run", "--iterations", "1", "--quiet"], needle)
    assert "BytesIO" not in line and not (photos / "run").exists()


def test_a_junk_record_later_in_the_pack(photos):
    from infinitygan.data.lmdb_pack import LMDBDataset
    from infinitygan.errors import UserError

    _damaged(photos / "pack.lmdb", records={b"00000001": b"junk"})
    ds = LMDBDataset(photos / "pack.lmdb")
    with pytest.raises(UserError, match="image 1 is not a readable 32x32 image") as e:
        ds[1]
    assert "BytesIO" not in str(e.value)


def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(photos, monkeypatch, capsys):
    import lmdb

    real_open = lmdb.open

    class FullTxn:
        def __init__(self, txn):
            self.txn = txn

        def put(self, *a, **k):
            raise lmdb.DiskError("mdb_put: No space left on device")

        def __getattr__(self, name):
            return getattr(self.txn, name)

    class FullEnv:
        def __init__(self, env):
            self.env = env

        def begin(self, *a, **k):
            return FullTxn(self.env.begin(*a, **k))

        def __getattr__(self, name):
            return getattr(self.env, name)

    monkeypatch.setattr(lmdb, "open", lambda *a, **k: FullEnv(real_open(*a, **k)))
    monkeypatch.chdir(photos)
    before = _tree(photos)
    _refused(capsys, ["prepare", "imgs", "--out", "new.lmdb", "--quiet"], "disk full")
    assert _tree(photos) == before and not (photos / "new.lmdb").exists()


def test_prepare_out_of_memory_says_so(photos, monkeypatch, capsys):
    """A MemoryError while preprocessing was counted as an image that could not be decoded."""
    import infinitygan.data.lmdb_pack as lp

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(lp, "_load_uint8", oom)
    monkeypatch.chdir(photos)
    before = _tree(photos)
    line = _refused(capsys, ["prepare", "imgs", "--out", "new.lmdb", "--full-size", "8192", "--quiet"], "memory")
    assert "decoded" not in line and _tree(photos) == before
    monkeypatch.setenv("INFINITYGAN_MEMORY_MB", "100")  # 8192^2 pictures need more than that: refused up front
    _refused(capsys, ["prepare", "imgs", "--out", "new.lmdb", "--full-size", "8192", "--quiet"], "--full-size 8192")
