"""Peak resident memory of `infinitygan generate` at several sizes (bounded memory).

Runs `python -m infinitygan generate` in a child process per size and reads that child's own
peak RSS (and CPU seconds) from os.wait4. Sizes are N (square) or WxH. Usage:

    python benchmarks/memory.py [--model MODEL] [--sizes 1024x256 262144x256] [--ext tif png]

Prints one JSON object per extension: {size: {"peak_rss_mb", "seconds", "cpu_seconds",
"file_mb"}, "ratio": peak of the last size / peak of the first}.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time


def peak_rss_of(cmd: list[str]) -> tuple[float, float, float]:
    """(peak RSS in MB, wall seconds, CPU seconds) of a child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def parse_size(s: str) -> tuple[int, int]:
    w, _, h = s.partition("x")
    return int(w), int(h or w)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model file (default: a fresh tiny model)")
    ap.add_argument("--sizes", nargs="+", default=["1024", "8192"], help="N or WxH")
    ap.add_argument("--ext", nargs="+", default=["tif"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="tiny", help="preset of the random model when --model is not given")
    ap.add_argument("--extra", default="", help='more `generate` options as one string, e.g. --extra "--max-memory 300"')
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = os.path.join(tmp, "model.safetensors")
            subprocess.run([sys.executable, "-m", "infinitygan", "init", "--preset", args.preset, "--out", model],
                           check=True, stdout=subprocess.DEVNULL)
        for ext in args.ext:
            res = {}
            for s in args.sizes:
                w, h = parse_size(s)
                out = os.path.join(tmp, f"img.{ext}")
                rss, sec, cpu = peak_rss_of([sys.executable, "-m", "infinitygan", "generate", "--model", model,
                                             "--seed", "1", "--width", str(w), "--height", str(h), "--device",
                                             args.device, "--out", out, "--quiet", *shlex.split(args.extra)])
                res[f"{w}x{h}"] = {"peak_rss_mb": round(rss, 1), "seconds": round(sec, 1), "cpu_seconds": round(cpu, 1),
                                   "file_mb": round(os.path.getsize(out) / 2**20, 1)}
                os.unlink(out)
            first, last = (f"{w}x{h}" for w, h in map(parse_size, (args.sizes[0], args.sizes[-1])))
            res["ratio"] = round(res[last]["peak_rss_mb"] / res[first]["peak_rss_mb"], 3)
            print(json.dumps({"ext": ext, **res}), flush=True)


if __name__ == "__main__":
    main()
