"""Distributed synthesis on CPU processes (issue 10): is the work really divided?

Runs `infinitygan generate` once as one process and once under torchrun with N gloo ranks on
the same region, and reads each run's CPU seconds (user + system, all processes, from
os.wait4: torchrun waits for its ranks, so their usage is included) and peak RSS (the largest
single process). Checks the two files are byte-identical. Usage:

    python benchmarks/distributed.py [--model M] [--width 2048] [--height 2048] [--ranks 2] [--ext tif]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time


def run(cmd: list[str], cwd: str) -> dict:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{err[-2000:]}")
    return {"seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb_largest_process": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=2048)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--ext", default="tif")
    args = ap.parse_args()
    gen = ["generate", "--seed", "5", "--width", str(args.width), "--height", str(args.height), "--device", "cpu",
           "--quiet"] + (["--model", os.path.abspath(args.model)] if args.model else [])
    res = {"width": args.width, "height": args.height, "ranks": args.ranks, "ext": args.ext,
           "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        one, many = f"one.{args.ext}", f"many.{args.ext}"
        res["one_process"] = run([sys.executable, "-m", "infinitygan", *gen, "--out", one], tmp)
        res["torchrun"] = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               str(args.ranks), "-m", "infinitygan", *gen, "--out", many], tmp)
        res["byte_identical"] = filecmp.cmp(os.path.join(tmp, one), os.path.join(tmp, many), shallow=False)
    res["cpu_ratio"] = round(res["torchrun"]["cpu_seconds"] / res["one_process"]["cpu_seconds"], 3)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
