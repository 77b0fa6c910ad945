"""Streaming writers: what is read back equals what was written, band boundaries anywhere."""
import numpy as np
import pytest
from PIL import Image

from infinitygan.errors import UserError
from infinitygan.io.images import save_image, to_uint8, write_bands


def _bands(img, heights):
    y = 0
    for h in heights:
        yield y, img[y: y + h]
        y += h
    assert y == img.shape[0]


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.7, size=(301, 517, 3)).astype(np.float32)


@pytest.mark.parametrize("ext", ["png", "tif", "npy", "jpg"])
def test_round_trip(tmp_path, image, ext):
    if ext == "jpg":  # lossy: use a smooth image
        yy, xx = np.mgrid[0:301, 0:517].astype(np.float32)
        image = np.stack([np.sin(xx / 40), np.cos(yy / 30), (xx - yy) / 600], -1).astype(np.float32)
    path = write_bands(tmp_path / f"x.{ext}", image.shape[1], image.shape[0], _bands(image, [17, 256, 28]))
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
        yield 0, image[:10]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_bands(tmp_path / "x.png", image.shape[1], image.shape[0], broken())
    assert list(tmp_path.iterdir()) == []


def test_bad_paths(tmp_path, image):
    with pytest.raises(UserError, match="extension"):
        save_image(tmp_path / "x.gif", image)
    with pytest.raises(UserError, match="does not exist"):
        save_image(tmp_path / "missing" / "x.png", image)
    with pytest.raises(UserError, match="expected an"):
        save_image(tmp_path / "x.png", image[..., 0])


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
