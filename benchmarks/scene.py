"""Measured checks of spatial style fusion and cyclic panoramas (issue 7).

    python benchmarks/scene.py memory [--sizes 1024 8192]   # peak RSS of a 2-centre fused .tif
    python benchmarks/scene.py cost [--size 2048]           # FLOPs and seconds, 2-centre fusion vs plain
    python benchmarks/scene.py cyclic [--seeds 20]          # wrap-column gradient vs interior columns

Each prints one JSON object. ``memory`` runs ``infinitygan generate`` in child processes (their
own peak RSS from os.wait4); ``cost`` counts FLOPs with torch's FlopCounterMode and times the
median of ``--repeats`` runs; ``cyclic`` uses the bundled model (trained weights matter there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def two_centres(size: int) -> list[str]:
    """Two style centres a quarter of the width left and right of the centre: one vertical
    transition through the middle of a size x size region centred on x = 0."""
    return ["--style", f"1@{-size // 4},2", "--style", f"2@{size // 4},2"]


def cmd_memory(args) -> dict:
    sys.path.insert(0, os.path.dirname(__file__))
    from memory import peak_rss_of

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = os.path.join(tmp, "tiny.safetensors")
            subprocess.run([sys.executable, "-m", "infinitygan", "init", "--preset", "tiny", "--out", model],
                           check=True, stdout=subprocess.DEVNULL)
        res = {}
        for s in args.sizes:
            out = os.path.join(tmp, "img.tif")
            rss, sec, _ = peak_rss_of([sys.executable, "-m", "infinitygan", "generate", "--model", model, "--seed", "3",
                                    "--width", str(s), "--height", str(s), "--device", args.device, "--out", out,
                                    "--quiet", *two_centres(s)])
            res[str(s)] = {"peak_rss_mb": round(rss, 1), "seconds": round(sec, 1)}
            os.unlink(out)
        res["ratio"] = round(res[str(args.sizes[-1])]["peak_rss_mb"] / res[str(args.sizes[0])]["peak_rss_mb"], 3)
    return res


def cmd_cost(args) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from infinitygan.api import init_model, load_model
    from infinitygan.scene import Point, Scene, StyleCentre
    from infinitygan.scene.bind import bind_scene

    model = load_model(args.model) if args.model else init_model("tiny", 0)
    synth = model.synthesizer(args.device)
    region = model.region(args.size, args.size)
    q = args.size // 4
    scenes = {"plain": Scene(3),
              "fusion_2_centres": Scene(3, [StyleCentre(Point(-q, 2), seed=1), StyleCentre(Point(q, 2), seed=2)])}
    res = {"size": args.size, "tile": synth.planner.tile_size(None)}
    for name, scene in scenes.items():
        canvas = bind_scene(scene, synth)

        def run():
            for _ in synth.bands(canvas, synth.planner.plan(region)):
                pass

        with FlopCounterMode(display=False) as fc:
            run()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        res[name] = {"gflops": round(fc.get_total_flops() / 1e9, 2), "seconds_median": round(statistics.median(times), 2)}
        if canvas.fusion is not None:
            fu = canvas.fusion
            tiles = synth.planner.tile_plan(region, None)
            res[name]["fused_tiles"] = sum(fu.gt_label(t.row_cell, t.rows, t.col_cell, t.cols) is None for t in tiles)
            res[name]["tiles"] = len(tiles)
    res["flops_ratio"] = round(res["fusion_2_centres"]["gflops"] / res["plain"]["gflops"], 3)
    res["seconds_ratio"] = round(res["fusion_2_centres"]["seconds_median"] / res["plain"]["seconds_median"], 3)
    res["threads"] = torch.get_num_threads()
    return res


def column_gradients(img: np.ndarray) -> np.ndarray:
    """Mean |I(x + 1) - I(x)| per column pair of a periodic image, the last pair across the wrap. (W,)."""
    nxt = np.roll(img, -1, axis=1)
    return np.abs(nxt - img).mean(axis=(0, 2))


def cmd_cyclic(args) -> dict:
    from infinitygan.api import load_model
    from infinitygan.scene import Scene
    from infinitygan.scene.api import render
    from infinitygan.coords import cyclic_turns

    model = load_model(args.model)
    res = {"seeds": args.seeds, "height": args.height}
    cfg = model.config.generator.coords
    for P in args.periods:
        grads, plain_grads = [], []
        for seed in range(args.seeds):
            img = render(model, Scene(seed, cyclic=P), width=P, height=args.height, device=args.device)
            grads.append(column_gradients(img))
            ref = render(model, Scene(seed), width=P + 1, height=args.height, device=args.device)
            plain_grads.append(np.abs(np.diff(ref, axis=1)).mean(axis=(0, 2)))
        g = np.mean(grads, axis=0)  # (P,): mean over seeds; g[P - 1] is the wrap column
        interior = float(np.median(g[:-1]))
        res[str(P)] = {
            "native": P % (16 * cfg.period) == 0,
            "coordinate_turns": cyclic_turns(cfg, P // 16),
            "wrap_gradient": round(float(g[-1]), 5),
            "interior_median": round(interior, 5),
            "ratio": round(float(g[-1]) / interior, 3),
            "interior_vs_plain": round(interior / float(np.median(np.mean(plain_grads, axis=0))), 3),
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    c = sub.add_parser("cost")
    c.add_argument("--size", type=int, default=2048)
    c.add_argument("--repeats", type=int, default=3)
    y = sub.add_parser("cyclic")
    y.add_argument("--seeds", type=int, default=20)
    y.add_argument("--height", type=int, default=128)
    y.add_argument("--periods", type=int, nargs="+", default=[2224, 1024])
    for p in (m, c, y):
        p.add_argument("--model", default=None, help="model file (memory/cost: a fresh tiny model; cyclic: bundled)")
        p.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps({"memory": cmd_memory, "cost": cmd_cost, "cyclic": cmd_cyclic}[args.what](args)))


if __name__ == "__main__":
    main()
