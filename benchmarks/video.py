"""Seconds and peak resident memory of `infinitygan pan` (issue 10, "a 30-second 1080p video
renders without holding more than a few frames").

Runs `python -m infinitygan pan` in a child process and reads that child's own peak RSS from
os.wait4; a second, 1-frame run of the same size gives the baseline (model, engine, encoder).
Usage:

    python benchmarks/video.py [--model MODEL] [--width 1920] [--height 1080] [--frames 900]
                               [--speed 4] [--fps 30]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from memory import peak_rss_of  # benchmarks/memory.py (this folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    frame_mb = args.width * args.height * 3 / 2**20
    res = {"width": args.width, "height": args.height, "frames": args.frames, "speed": args.speed,
           "fps": args.fps, "frame_uint8_mb": round(frame_mb, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fly.mp4")
        base = [sys.executable, "-m", "infinitygan", "pan", "--seed", "7", "--width", str(args.width),
                "--height", str(args.height), "--speed", str(args.speed), "--fps", str(args.fps),
                "--device", args.device, "--out", out, "--quiet"]
        if args.model:
            base += ["--model", args.model]
        for name, frames in (("one_frame", 1), ("video", args.frames)):
            rss, sec, cpu = peak_rss_of(base + ["--frames", str(frames)])
            res[name] = {"peak_rss_mb": round(rss, 1), "seconds": round(sec, 1), "cpu_seconds": round(cpu, 1),
                         "file_mb": round(os.path.getsize(out) / 2**20, 2)}
    extra = res["video"]["peak_rss_mb"] - res["one_frame"]["peak_rss_mb"]
    res["extra_rss_over_one_frame_run_mb"] = round(extra, 1)
    res["extra_in_frames"] = round(extra / frame_mb, 2)
    res["all_frames_uint8_mb"] = round(frame_mb * args.frames, 1)
    res["frames_per_second"] = round(args.frames / res["video"]["seconds"], 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
