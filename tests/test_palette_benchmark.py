"""benchmarks/palette.py: the one-palette-per-canvas figures of issue 30 on made-up panoramas."""
import numpy as np

from conftest import benchmark_script


def _script():
    return benchmark_script("palette")


def _canvas(sky_left: float, sky_right: float, width: int = 1024, height: int = 64) -> np.ndarray:
    """An image in [-1, 1] whose sky (top quarter) is ``sky_left`` then ``sky_right`` (in [0, 1])."""
    img = np.full((height, width, 3), 0.9, dtype=np.float32)     # ground: bright, must not count
    img[: height // 4, : width // 2] = sky_left * 2 - 1
    img[: height // 4, width // 2:] = sky_right * 2 - 1
    return img


def test_one_palette_per_canvas_scores_zero_within():
    m = _script()
    windows = [m.sky_windows(_canvas(v, v)) for v in (0.2, 0.5, 0.8)]
    f = m.palette_figures(windows, [1, 2, 3])
    assert windows[0].shape == (8, 3)
    assert f["within_sd"] == 0 and f["max_jump"] == 0 and f["ratio"] == 0
    assert abs(f["between_sd"] - np.std([0.2, 0.5, 0.8])) < 1e-3
    assert f["night_canvases"] == round(1 / 3, 3)


def test_a_night_to_day_cut_is_the_jump():
    m = _script()
    windows = [m.sky_windows(_canvas(0.5, 0.5)), m.sky_windows(_canvas(0.1, 0.7))]
    f = m.palette_figures(windows, [4, 9])
    assert f["max_jump"] == 0.6 and f["max_jump_seed"] == 9
    assert f["within_sd"] == 0.15 and f["ratio"] > 1


def test_seeds_arg():
    m = _script()
    assert m.seeds_arg("1-3,7") == [1, 2, 3, 7]
