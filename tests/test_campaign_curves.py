"""benchmarks/campaign_curves.py: learning curves and the plateau rule from made-up progress logs."""
import json
from pathlib import Path

from conftest import benchmark_script
from infinitygan.campaign import progress


def _script():
    return benchmark_script("campaign_curves")


def _log(root: Path, name: str, points: list[tuple[int, float]]) -> None:
    d = root / "campaigns" / name
    d.mkdir(parents=True)
    progress.append(d / "progress.tsv", progress.Row("save", 0, 0, 0.0))
    for it, v in points:
        progress.append(d / "progress.tsv", progress.Row("eval", it, it * 8, 0.1, 0.1, {"swd_1x": v}))


def test_curve_takes_the_last_eval_of_an_iteration_in_order():
    m = _script()
    rows = [progress.Row("eval", 500, 4000, 0, 0, {"swd_1x": 90.0}),
            progress.Row("save", 600, 4800, 0),
            progress.Row("eval", 250, 2000, 0, 0, {"swd_1x": 120.0, "swd_8x": 200.0}),
            progress.Row("eval", 500, 4000, 0, 0, {"swd_1x": 88.0}, note="3 seeds"),
            progress.Row("eval", 600, 4800, 0, 0, {"swd_8x": 150.0})]
    assert m.curve(rows, "swd_1x") == [(250, 2000, 120.0), (500, 4000, 88.0)]
    assert m.curve(rows, "swd_8x") == [(250, 2000, 200.0), (600, 4800, 150.0)]


def test_plateau_rule():
    m = _script()
    assert m.plateaued([100, 90, 80]) is None                     # too few points to say
    assert m.plateaued([100, 60, 59, 58, 61]) is True             # the last 3 gained < 5% on 60
    assert m.plateaued([100, 80, 70, 60, 50]) is False
    assert m.plateaued([100, 60, 70, 80, 90]) is True             # getting worse is a plateau too


def test_main_prints_each_campaign_and_refuses_a_missing_one(tmp_path, capsys):
    m = _script()
    _log(tmp_path, "a", [(250, 120.0), (500, 80.0), (750, 79.0), (1000, 78.5), (1250, 78.0)])
    _log(tmp_path, "b", [(250, 150.0)])
    assert m.main(["--root", str(tmp_path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["campaign"] for o in out] == ["a", "b"]
    assert out[0]["best"] == {"iteration": 1250, "images": 10000, "value": 78.0} and out[0]["plateaued"] is True
    assert out[1]["plateaued"] is None and len(out[1]["points"]) == 1
    assert m.main(["--root", str(tmp_path), "a", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
