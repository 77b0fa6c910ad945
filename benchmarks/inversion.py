"""Inversion figures for docs/applications.md (issue 8).

* seconds per inversion step and peak memory at 128x128 and 256x256 (each size in its own child
  process; peak RSS of that child from os.wait4), default objective (LPIPS when its weights exist);
* the recovery check: the bundled model's own 128x128 output at a known place, inverted from
  another seed with the default 1000 steps, re-rendered: PSNR (dB) vs the target.

    python benchmarks/inversion.py --speed                      # seconds/step, peak memory
    python benchmarks/inversion.py --outpaint-memory            # peak RSS of outpaint, 10k and 100k wide
    python benchmarks/inversion.py --recover [--steps 1000] [--set zl_prior_weight=0 ...]   # PSNR
    python benchmarks/inversion.py --recover --target-seeds 1 2 3 4 5 6 7 8 --jobs 2 --threads 1
    python benchmarks/inversion.py --recover --outpaint-png out.png   # and the 3x continuation
    python benchmarks/inversion.py --ceiling [--target-seeds ...]   # PSNR with the true latents, other noise

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _child_speed(size: int, steps: int, threads: int) -> None:
    import torch

    import infinitygan as ig
    from infinitygan.inversion import Inversion, InversionConfig
    from infinitygan.inversion.perceptual import perceptual_loss

    torch.set_num_threads(threads)
    m = ig.load_model()
    region = m.region(size, size)
    target = m.generate(seed=3, width=size, height=size, x=region.x, y=region.y)
    inv = Inversion(m, InversionConfig(steps=steps + 2), perceptual_loss("auto", warn=lambda _: None))
    times = []
    last = [time.perf_counter()]

    def tick(step, _):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    inv(target, region, callback=tick)
    timed = sorted(times[2:])  # the first steps pay for imports and allocations
    print(json.dumps({"seconds_per_step": round(timed[len(timed) // 2], 3),
                      "lpips": inv.perceptual is not None, "threads": threads}))


def speed(sizes: list[int], steps: int, threads: int) -> dict:
    res = {}
    for s in sizes:
        cmd = [sys.executable, __file__, "--child-speed", str(s), "--steps", str(steps), "--threads", str(threads)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"child failed: {' '.join(cmd)}")
        res[f"{s}x{s}"] = {**json.loads(out), "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1)}
    return res


def recover(steps: int, size: int, threads: int, options: dict, outpaint_png: str | None = None,
            target_seed: int = 3) -> dict:
    """Inverts the ``target_seed`` image (inversion seed 0: its own canvas is the start)."""
    import torch

    import infinitygan as ig
    from infinitygan.inversion import Inversion, InversionConfig, psnr
    from infinitygan.inversion.perceptual import perceptual_loss

    torch.set_num_threads(threads)
    m = ig.load_model()
    region = m.region(size, size)
    target = m.generate(seed=target_seed, width=size, height=size, x=region.x, y=region.y)
    t0 = time.perf_counter()
    cfg = InversionConfig(steps=steps, seed=0, **options)
    lat = Inversion(m, cfg, perceptual_loss("auto", warn=lambda _: None))(target, region)
    start = m.generate(seed=0, width=size, height=size, x=region.x, y=region.y)
    # where the recovered structure latents ended: RMS over the image's own zS cells and over the
    # whole footprint (margins included); a sample of N(0, I) has 1.
    mg = m.generator.geometry.gs_margin
    inner = lat.zl[:, mg:lat.zl.shape[1] - mg, mg:lat.zl.shape[2] - mg]
    return {"size": size, "steps": steps, "target_seed": target_seed, "region": [region.x, region.y, size, size],
            "psnr_db": lat.metrics["psnr"], "psnr_of_the_start_db": round(psnr(start, target), 2),
            "lpips": lat.metrics.get("lpips"), "options": options, "seconds": round(time.perf_counter() - t0, 1),
            "zl_rms_image_cells": round(float(inner.square().mean().sqrt()), 3),
            "zl_rms_footprint": round(float(lat.zl.square().mean().sqrt()), 3),
            "zg_rms": round(float(lat.zg.square().mean().sqrt()), 3),
            **(_continuation(m, lat, outpaint_png) if outpaint_png else {})}


def _continuation(m, lat, path: str) -> dict:
    """Outpaints the recovered latents to 3x the size on the canvas of seed 7 and writes the
    picture (the inverted region framed in red); the surroundings show what the inverted margins
    continue the image with."""
    from PIL import Image, ImageDraw

    from infinitygan.inversion.outpaint import outpaint, outpaint_region
    from infinitygan.io.images import to_uint8

    r = lat.region
    big = outpaint_region(r, 3 * r.width, 3 * r.height)
    img = Image.fromarray(to_uint8(outpaint(m, lat, 7, big)))
    x, y = r.x - big.x, r.y - big.y
    ImageDraw.Draw(img).rectangle([x - 1, y - 1, x + r.width, y + r.height], outline=(255, 0, 0))
    img.save(path)
    return {"outpaint_png": path}


def recover_many(target_seeds: list[int], jobs: int, steps: int, size: int, threads: int, options: dict) -> dict:
    """``recover`` for every target seed, ``jobs`` processes at a time; per-seed figures and summary."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        runs = list(pool.map(_recover_seed, [(s, steps, size, threads, options) for s in target_seeds]))
    db = sorted(r["psnr_db"] for r in runs)
    return {"per_seed": {r["target_seed"]: {k: r[k] for k in ("psnr_db", "psnr_of_the_start_db", "zl_rms_image_cells",
                                                               "zl_rms_footprint", "zg_rms", "seconds")} for r in runs},
            "mean_psnr_db": round(sum(db) / len(db), 2), "median_psnr_db": round((db[(len(db) - 1) // 2] + db[len(db) // 2]) / 2, 2),
            "min_psnr_db": db[0], "at_least_30_db": sum(d >= 30 for d in db), "of": len(db),
            "steps": steps, "size": size, "options": options}


def _recover_seed(args) -> dict:
    seed, steps, size, threads, options = args
    return recover(steps, size, threads, options, target_seed=seed)


def ceiling(size: int, threads: int, target_seeds: list[int], seeds: int = 8) -> dict:
    """What each recovery target allows without its noise: the target's own zg, zl and styles (its
    canvas) with the noise of every GT conv over the footprint taken from other seeds (mean PSNR
    over ``seeds`` of them), or set to zero. An inversion that does not recover the noise maps
    themselves cannot beat the first figure on average."""
    import numpy as np
    import torch

    import infinitygan as ig
    from infinitygan.inversion import footprint, psnr

    torch.set_num_threads(threads)
    m = ig.load_model()
    region = m.region(size, size)
    synth = m.synthesizer()
    fp = footprint(synth.geometry, region)
    res = {}
    for ts in target_seeds:
        target = m.generate(seed=ts, width=size, height=size, x=region.x, y=region.y)

        def with_noise(source) -> float:
            canvas = m.canvas(ts)
            for j, w in enumerate(fp.noise):
                canvas.override_noise(j, w.row0, w.col0, source(j, w))
            return psnr(synth.render(canvas, region), target)

        other = [with_noise(lambda j, w, s=s: m.canvas(s).noise(j, w.row0, w.rows, w.col0, w.cols))
                 for s in range(100, 100 + seeds)]
        zero = with_noise(lambda j, w: torch.zeros(1, w.rows, w.cols))
        res[ts] = {"psnr_other_noise_db": round(float(np.mean(other)), 2), "psnr_zero_noise_db": round(zero, 2)}
    return {"size": size, "noise_seeds": seeds, "per_seed": res}


def outpaint_memory(widths: list[int], height: int) -> dict:
    """Peak RSS of `infinitygan outpaint --latents` at several widths (each in its own process),
    from a 256x128 inversion (20 steps: the memory does not depend on the fit)."""
    import tempfile

    import infinitygan as ig
    from infinitygan.inversion import Inversion, InversionConfig

    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        m = ig.load_model()
        region = m.region(256, 128)
        target = m.generate(seed=3, width=256, height=128, x=region.x, y=region.y)
        lat = Inversion(m, InversionConfig(steps=20))(target, region)
        path = lat.save(os.path.join(tmp, "lat.safetensors"))
        for w in widths:
            out = os.path.join(tmp, "pano.tif")
            cmd = [sys.executable, "-m", "infinitygan", "outpaint", "--latents", str(path), "--width", str(w),
                   "--height", str(height), "--seed", "1", "--out", out, "--quiet"]
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"command failed: {' '.join(cmd)}")
            res[f"{w}x{height}"] = {"peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
                                    "seconds": round(time.perf_counter() - t0, 1)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--recover", action="store_true")
    ap.add_argument("--ceiling", action="store_true", help="PSNR of the true latents with other noise")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--outpaint-memory", action="store_true", help="peak RSS of outpaint at --widths")
    ap.add_argument("--widths", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=None, help="timed steps (speed, default 10) or total (recover, 1000)")
    ap.add_argument("--size", type=int, default=128, help="recovery check size")
    ap.add_argument("--threads", type=int, default=torch_threads())
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an InversionConfig field for --recover, e.g. zl_prior_weight=0")
    ap.add_argument("--target-seeds", type=int, nargs="+", default=None,
                    help="--recover over these target images (default: seed 3 alone)")
    ap.add_argument("--jobs", type=int, default=1, help="--target-seeds: inversions run at once (each --threads)")
    ap.add_argument("--outpaint-png", default=None, help="--recover: also write the 3x outpainting (seed 7) here")
    ap.add_argument("--child-speed", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.outpaint_png and a.target_seeds:
        ap.error("--outpaint-png goes with a single --recover (no --target-seeds)")
    if a.child_speed is not None:
        return _child_speed(a.child_speed, a.steps, a.threads)
    res = {}
    if a.speed:
        res["speed"] = speed(a.sizes, a.steps or 10, a.threads)
    if a.outpaint_memory:
        res["outpaint_memory"] = outpaint_memory(a.widths, 256)
    if a.recover:
        options = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)}
        if a.target_seeds:
            res["recover"] = recover_many(a.target_seeds, a.jobs, a.steps or 1000, a.size, a.threads, options)
        else:
            res["recover"] = recover(a.steps or 1000, a.size, a.threads, options, a.outpaint_png)
    if a.ceiling:
        res["ceiling"] = ceiling(a.size, a.threads, a.target_seeds or [3])
    print(json.dumps(res))


def torch_threads() -> int:
    return min(2, os.cpu_count() or 1)


if __name__ == "__main__":
    main()
