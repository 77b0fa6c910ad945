"""Synthesis benchmark: FLOPs per pixel, seconds and peak memory of three tiling schemes.

* ``default``: the engine's default tile and batch for the device;
* ``paper_patches``: the authors' scheme, 101-pixel patches every 96 pixels, one per forward,
  each patch running GS on its own 35x35 zl window;
* ``one_shot``: one forward pass for the whole region (the lower bound on FLOPs).

On CPU each scheme runs in a fresh process so that its peak memory is its own:
``peak_memory_mb`` is the resident-set growth over the process with the model loaded, and
``peak_rss_mb`` the whole process's peak. On CUDA it is ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

MODES = ("default", "paper_patches", "one_shot")


def _rss_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(model_path: str | None, width: int, height: int, mode: str, device: str = "auto",
            dtype: str = "float32", repeats: int = 3, tile: int | None = None, batch: int | None = None,
            seed: int = 0, count_flops: bool = True) -> dict:
    """Measure one scheme in this process. Returns a JSON-able dict."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..api import load_model

    torch.set_num_threads(torch.get_num_threads())
    model = load_model(model_path)
    synth = model.synthesizer(device, dtype)
    canvas = model.canvas(seed)
    region = model.region(width, height)
    planner = synth.planner
    if mode == "default":
        plan = planner.plan(region, tile, batch)
    elif mode == "paper_patches":
        plan = planner.render_plan(planner.paper_plan(region), 1, shared_structure=False)
    elif mode == "one_shot":
        plan = planner.render_plan(planner.one_shot_plan(region), 1)
    else:
        raise ValueError(mode)
    cuda = synth.device.type == "cuda"

    def run():
        for _ in synth.tiles(canvas, plan):
            pass
        if cuda:
            torch.cuda.synchronize()

    base_rss = _rss_mb("VmRSS")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_rss = _rss_mb("VmHWM")
    else:
        peak_rss = _rss_mb("VmHWM")
        peak = peak_rss - base_rss
    flops = None
    if count_flops:
        with FlopCounterMode(display=False) as fc:
            run()
        flops = fc.get_total_flops() / (width * height)
    t = plan.tiles.tile(0, 0)
    return {
        "flops_per_pixel": flops,
        "seconds": statistics.median(times),
        "peak_memory_mb": round(peak, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "tiles": len(plan),
        "tile_output": [synth.geometry.ts_output_size(t.rows), synth.geometry.ts_output_size(t.cols)],
        "batch": batch if mode == "default" else plan.batch,
        "device": str(synth.device),
        "dtype": dtype,
    }


def run_bench(model_path: str | None, width: int, height: int, device: str = "auto", dtype: str = "float32",
              repeats: int = 3, modes=MODES, tile: int | None = None, batch: int | None = None,
              isolate: bool = True) -> dict:
    """All schemes; each in a fresh process when ``isolate`` (needed for per-scheme CPU memory)."""
    import sys

    out = {}
    for i, mode in enumerate(modes):
        print(f"bench: {mode} ({i + 1}/{len(modes)}) at {width}x{height}, {repeats} timed run(s)...",
              file=sys.stderr, flush=True)
        kwargs = dict(model_path=model_path, width=width, height=height, mode=mode, device=device, dtype=dtype,
                      repeats=repeats, tile=tile if mode == "default" else None,
                      batch=batch if mode == "default" else None)
        if isolate:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
                out[mode] = ex.submit(measure, **kwargs).result()
        else:
            out[mode] = measure(**kwargs)
        print(f"bench: {mode}: {out[mode]['seconds']:.2f} s, {out[mode]['peak_rss_mb']:.0f} MB peak RSS",
              file=sys.stderr, flush=True)
    return out
