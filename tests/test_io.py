"""Streaming writers: what is read back equals what was written, for any tile grid."""
import numpy as np
import pytest
from PIL import Image

from infinitygan.errors import UserError
from infinitygan.io.images import NonFiniteOutput, array_pieces, check_output, save_image, to_uint8, write_tiles


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.7, size=(301, 517, 3)).astype(np.float32)


@pytest.mark.parametrize("ext", ["png", "tif", "npy", "jpg"])
@pytest.mark.parametrize("tile", [(48, 96), (256, 256), (304, 528)])
def test_round_trip(tmp_path, image, ext, tile):
    if ext == "jpg":  # lossy: use a smooth image
        yy, xx = np.mgrid[0:301, 0:517].astype(np.float32)
        image = np.stack([np.sin(xx / 40), np.cos(yy / 30), (xx - yy) / 600], -1).astype(np.float32)
    th, tw = tile
    pieces = ((y, x, image[y: y + th, x: x + tw]) for y in range(0, 301, th) for x in range(0, 517, tw))
    path = write_tiles(tmp_path / f"x.{ext}", image.shape[1], image.shape[0], th, tw, pieces)
    if ext == "npy":
        assert np.array_equal(np.load(path), image)
    elif ext == "tif":
        import tifffile

        assert np.array_equal(tifffile.imread(path), to_uint8(image))
    elif ext == "png":
        assert np.array_equal(np.asarray(Image.open(path)), to_uint8(image))
    else:
        back = np.asarray(Image.open(path)).astype(int)
        assert back.shape == image.shape and np.abs(back - to_uint8(image)).mean() < 3


def test_to_uint8_range():
    x = np.array([[[-2.0, -1.0, 0.0], [1.0, 3.0, 0.5]]], np.float32)
    assert to_uint8(x).tolist() == [[[0, 0, 128], [255, 255, 191]]]


def test_failed_write_leaves_nothing(tmp_path, image):
    def broken():
        yield from list(array_pieces(image, 64))[:3]
        raise RuntimeError("interrupted")

    for ext in ("png", "tif", "npy"):
        with pytest.raises(RuntimeError):
            write_tiles(tmp_path / f"x.{ext}", image.shape[1], image.shape[0], 64, 64, broken())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", ["png", "tif", "npy", "jpg"])
def test_non_finite_output_never_replaces_a_file(tmp_path, image, ext):
    target = tmp_path / f"x.{ext}"
    target.write_bytes(b"precious")
    bad = image.copy()
    bad[200, 300, 1] = np.nan
    with pytest.raises(NonFiniteOutput):
        save_image(target, bad)
    assert target.read_bytes() == b"precious" and len(list(tmp_path.iterdir())) == 1


def test_refusals_before_any_work(tmp_path):
    with pytest.raises(UserError, match="JPEG"):
        check_output(tmp_path / "x.jpg", 100_000, 1000)
    with pytest.raises(UserError, match="free"):
        check_output(tmp_path / "x.npy", 2 ** 31 - 1, 2 ** 31 - 1)
    with pytest.raises(UserError, match="force"):
        check_output(tmp_path / "x.png", 2 ** 31 - 1, 2 ** 31 - 1)
    with pytest.raises(UserError, match="PNG writer's row"):  # forced past the disk, not past memory
        check_output(tmp_path / "x.png", 2 ** 31 - 1, 2 ** 31 - 1, force=True)
    check_output(tmp_path / "x.png", 2 ** 22, 2 ** 31 - 1, force=True)  # a 200 MB row
    with pytest.raises(UserError, match="directory"):
        check_output(tmp_path, 10, 10)


def test_bad_paths(tmp_path, image):
    with pytest.raises(UserError, match="extension"):
        save_image(tmp_path / "x.gif", image)
    with pytest.raises(UserError, match="does not exist"):
        save_image(tmp_path / "missing" / "x.png", image)
    with pytest.raises(UserError, match="expected a"):
        save_image(tmp_path / "x.png", image[..., 0])
    with pytest.raises(UserError, match="non-empty"):
        save_image(tmp_path / "x.png", np.zeros((0, 4, 3)))


def test_outputs_get_umask_permissions(tmp_path):
    import os
    import stat

    from infinitygan.io.images import save_image

    img = np.zeros((16, 16, 3), np.float32)
    old = os.umask(0o022)
    try:
        for ext in (".png", ".npy", ".tif"):
            p = save_image(tmp_path / f"a{ext}", img)
            assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o027)
        p = save_image(tmp_path / "b.png", img)
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_outputs_write_through_symlinks_and_keep_permissions(tmp_path, tiny_model):
    """Writing onto a symbolic link replaces its target (the link stays a link); a replaced file
    keeps its permissions (they used to become a fresh file's)."""
    import os
    import stat

    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    tiny_model.generate_to_file(link, 1, 32, 32, device="cpu")
    assert link.is_symlink() and target.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "real.png"]
