"""GPU timings of paper-101 (random weights): 1024^2 and 8192^2, fp32 and bf16 (issue 2).

    python benchmarks/gpu.py [--sizes 1024 8192] [--dtypes float32 bfloat16] [--tile 1024] [--batch 2]

Prints one JSON line per (size, dtype): seconds (after a warm-up), peak GPU memory (MB).
The paper reports 8192^2 in 137 s (one patch per forward) and 76 s (16 per forward) on one 2080Ti.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--preset", default="paper-101")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    from infinitygan.api import init_model

    model = init_model(args.preset, 0)
    for dtype in args.dtypes:
        synth = model.synthesizer("cuda", dtype)
        canvas = model.canvas(1)
        for size in args.sizes:
            region = model.region(size, size)
            for _ in synth.bands(canvas, synth.planner.plan(model.region(256, 256), args.tile, args.batch)):
                pass
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in synth.bands(canvas, synth.planner.plan(region, args.tile, args.batch)):
                pass
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            print(json.dumps({"preset": args.preset, "size": size, "dtype": dtype, "seconds": round(dt, 2),
                              "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                              "tiles": len(synth.planner.tile_plan(region, args.tile)), "gpu": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
