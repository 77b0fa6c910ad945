"""Inversion figures for docs/applications.md (issue 8).

* seconds per inversion step and peak memory at 128x128 and 256x256 (each size in its own child
  process; peak RSS of that child from os.wait4), default objective (LPIPS when its weights exist);
* the recovery check: the bundled model's own 128x128 output at a known place, inverted from
  another seed with the default 1000 steps, re-rendered: PSNR (dB) vs the target.

    python benchmarks/inversion.py --speed                      # seconds/step, peak memory
    python benchmarks/inversion.py --outpaint-memory            # peak RSS of outpaint, 10k and 100k wide
    python benchmarks/inversion.py --recover [--steps 1000] [--set zl_prior_weight=0 ...]   # PSNR

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


def recover(steps: int, size: int, threads: int, options: dict) -> dict:
    import torch

    import infinitygan as ig
    from infinitygan.inversion import Inversion, InversionConfig, psnr
    from infinitygan.inversion.perceptual import perceptual_loss

    torch.set_num_threads(threads)
    m = ig.load_model()
    region = m.region(size, size)
    target = m.generate(seed=3, width=size, height=size, x=region.x, y=region.y)
    t0 = time.perf_counter()
    cfg = InversionConfig(steps=steps, seed=0, **options)
    lat = Inversion(m, cfg, perceptual_loss("auto", warn=lambda _: None))(target, region)
    start = m.generate(seed=0, width=size, height=size, x=region.x, y=region.y)
    return {"size": size, "steps": steps, "target_seed": 3, "region": [region.x, region.y, size, size],
            "psnr_db": lat.metrics["psnr"], "psnr_of_the_start_db": round(psnr(start, target), 2),
            "lpips": lat.metrics.get("lpips"), "options": options, "seconds": round(time.perf_counter() - t0, 1)}


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
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--outpaint-memory", action="store_true", help="peak RSS of outpaint at --widths")
    ap.add_argument("--widths", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=None, help="timed steps (speed, default 10) or total (recover, 1000)")
    ap.add_argument("--size", type=int, default=128, help="recovery check size")
    ap.add_argument("--threads", type=int, default=torch_threads())
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an InversionConfig field for --recover, e.g. zl_prior_weight=0")
    ap.add_argument("--child-speed", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_speed is not None:
        return _child_speed(a.child_speed, a.steps, a.threads)
    res = {}
    if a.speed:
        res["speed"] = speed(a.sizes, a.steps or 10, a.threads)
    if a.outpaint_memory:
        res["outpaint_memory"] = outpaint_memory(a.widths, 256)
    if a.recover:
        options = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.set)}
        res["recover"] = recover(a.steps or 1000, a.size, a.threads, options)
    print(json.dumps(res))


def torch_threads() -> int:
    return min(2, os.cpu_count() or 1)


if __name__ == "__main__":
    main()
