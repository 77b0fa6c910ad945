"""benchmarks/scaleinv_reference.py: the ideal extension's views are the real images at 1x, continue
the same scene at N x, and the script's 1x figure is the protocol's floor."""
import json

import numpy as np
import torch

from conftest import benchmark_script
from infinitygan.config import load_config
from infinitygan.data.procedural import render_landscape
from infinitygan.metrics import protocol as P
from infinitygan.metrics.evaluate import _open_data

CONFIG = "benchmarks/table1/mini/infinitygan.yaml"


def _data():
    from conftest import REPO
    cfg = load_config(REPO / CONFIG)
    proto = P.EvalProtocol.of(cfg)
    return proto, _open_data("procedural", cfg, proto)


def test_every_view_at_1x_is_the_real_image():
    m = benchmark_script("scaleinv_reference")
    proto, data = _data()
    for i in (0, 7):
        for fill in m.FILLS:
            view = m.extended_view(data.image_seed(i), proto.full_size, proto.reference_size, 1, fill)
            assert np.array_equal(view, data.load_uint8(i, proto.reference_size)), fill


def test_the_world_beyond_the_frame():
    """render_landscape(top=, rows=): the frame's own rows inside a taller render (but for the water
    reflection's vertical blur near the render's edges), the sky's top colour above it."""
    full = 101
    for seed in range(6):
        frame = render_landscape(seed, full, 2 * full)
        tall = render_landscape(seed, full, 2 * full, top=-full, rows=3 * full)
        assert tall.shape == (3 * full, 2 * full, 3)
        inside = tall[full:2 * full].astype(int)
        assert (inside != frame).mean() < 0.005 and np.abs(inside - frame).max() <= 4
    assert np.array_equal(render_landscape(3, 64, 80, top=0, rows=64), render_landscape(3, 64, 80))


def test_extended_view_keeps_the_scene_in_its_middle_rows():
    """At 2x the middle half of the rows is the scene twice as wide (Lanczos to the reference height,
    then the protocol's 2:1 resize); the rows above repeat the sky row, those below the ground row."""
    m = benchmark_script("scaleinv_reference")
    proto, data = _data()
    full, ref = proto.full_size, proto.reference_size
    seed = data.image_seed(3)
    view = m.extended_view(seed, full, ref, 2).astype(int)
    assert view.shape == (ref, ref, 3)
    band = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(render_landscape(seed, full, 2 * full))
                      .resize((2 * ref, ref), 1), dtype=np.uint8).copy()          # 1 = LANCZOS
    small = P.quantize(P.resize(P.to_unit(torch.from_numpy(band).permute(2, 0, 1)[None]), ref, "paper")).numpy()
    # the view's rows ref/4 .. 3ref/4 hold the band; compare its mean colour with the band's
    assert abs(view[ref // 4 + 2: 3 * ref // 4 - 2].mean() - small.mean()) < 6
    assert np.abs(np.diff(view[:ref // 4 - 1].astype(float), axis=0)).max() <= 2   # the sky rows repeat


def test_mosaic_view_is_the_grid_brought_down():
    m = benchmark_script("scaleinv_reference")
    tiles = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    tiles[1] = 255                                        # top-right white
    out = m.mosaic_view(tiles, 16)
    assert out.shape == (16, 16, 3)
    assert out[:6, 10:].min() == 255 and out[10:, :].max() == 0 and out[:6, :6].max() == 0


def test_script_prints_the_floor_at_1x(capsys):
    from infinitygan.metrics.evaluate import RealSet
    from infinitygan.metrics.swd import SWDAccumulator

    m = benchmark_script("scaleinv_reference")
    assert m.main(["--num", "32", "--scales", "1,2", "--references", "world,extended-flat"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["reference"], r["scale"]) for r in rows] == [(k, n) for k in ("world", "extended-flat") for n in (1, 2)]
    proto, data = _data()
    real = RealSet("procedural", data, 32, 0, size=proto.reference_size)
    other = RealSet("procedural", data, 32, 1, exclude=real.indices, size=proto.reference_size)
    acc = SWDAccumulator(seed=0)
    acc.add_real(real.images)
    acc.add_fake(other.images)
    floor = round(acc.compute()["mean"], 2)
    assert rows[0]["swd"] == rows[2]["swd"] == floor
    assert min(r["swd"] for r in rows[1::2]) > floor   # at 2x neither reference is the data


def test_bad_scales_are_one_line(capsys):
    m = benchmark_script("scaleinv_reference")
    assert m.main(["--scales", "0,x"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_flat_fill_is_one_colour_above_and_below():
    m = benchmark_script("scaleinv_reference")
    proto, data = _data()
    ref = proto.reference_size
    view = m.extended_view(data.image_seed(5), proto.full_size, ref, 4, "flat")
    assert len(np.unique(view[: 3 * ref // 8 - 1].reshape(-1, 3), axis=0)) == 1     # the sky: one colour
    assert len(np.unique(view[5 * ref // 8 + 1:].reshape(-1, 3), axis=0)) == 1      # the ground: one colour


def test_model_against_the_world_is_the_1x_column_at_1x(tmp_path, capsys):
    """--model: at 1x the world's views are the real images, so the figure is `eval --scale 1`'s."""
    from conftest import REPO
    from infinitygan.api import init_model
    from infinitygan.metrics.evaluate import evaluate

    model = init_model(str(REPO / CONFIG), seed=0)
    path = tmp_path / "mini.safetensors"
    model.save(path)
    m = benchmark_script("scaleinv_reference")
    assert m.main(["--num", "8", "--scales", "1", "--references", "", "--model", f"mini={path}"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    col = next(evaluate(model, "procedural", "swd", [1], ["paper"], 8, seed=0))
    assert row["model"] == "mini" and row["swd_vs_world"] == round(col["value"], 2)
    assert m.main(["--num", "16", "--references", "", "--config", "tiny", "--model", f"mini={path}"]) == 2
    assert "--config" in capsys.readouterr().err
