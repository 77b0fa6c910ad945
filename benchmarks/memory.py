"""Peak resident memory of `infinitygan generate` at two sizes (issue 2, "bounded memory").

Runs `python -m infinitygan generate` in a child process per size and reads that child's own
peak RSS from os.wait4. Usage:

    python benchmarks/memory.py [--model MODEL] [--sizes 1024 8192] [--ext tif]

Prints one JSON object: {size: {"peak_rss_mb": ..., "seconds": ...}, "ratio": last / first}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model file (default: a fresh tiny model)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--ext", default="tif")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = os.path.join(tmp, "tiny.safetensors")
            subprocess.run([sys.executable, "-m", "infinitygan", "init", "--preset", "tiny", "--out", model],
                           check=True, stdout=subprocess.DEVNULL)
        res = {}
        for s in args.sizes:
            out = os.path.join(tmp, f"img.{args.ext}")
            rss, sec = peak_rss_of([sys.executable, "-m", "infinitygan", "generate", "--model", model, "--seed", "1",
                                    "--width", str(s), "--height", str(s), "--device", args.device, "--out", out,
                                    "--quiet"])
            res[str(s)] = {"peak_rss_mb": round(rss, 1), "seconds": round(sec, 1),
                           "file_mb": round(os.path.getsize(out) / 2**20, 1)}
            os.unlink(out)
        res["ratio"] = round(res[str(args.sizes[-1])]["peak_rss_mb"] / res[str(args.sizes[0])]["peak_rss_mb"], 3)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
