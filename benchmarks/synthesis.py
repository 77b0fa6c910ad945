"""Tiling schemes compared (issue 2, "efficiency"): runs `infinitygan bench` on a model.

    python benchmarks/synthesis.py [--model MODEL] [--size 2048] [--device cpu] [--dtype float32]

Without --model a fresh `tiny` model is used (random weights: speed and FLOPs do not depend on
the weights). Prints the bench JSON plus the ratios the issue asks for.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = os.path.join(tmp, "model.safetensors")
            subprocess.run([sys.executable, "-m", "infinitygan", "init", "--preset", args.preset, "--out", model],
                           check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([sys.executable, "-m", "infinitygan", "bench", "--model", model, "--width",
                              str(args.size), "--height", str(args.size), "--device", args.device, "--dtype",
                              args.dtype, "--repeats", str(args.repeats)], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout)
    one = res["one_shot"]
    res["ratios"] = {
        "default_flops_vs_one_shot": res["default"]["flops_per_pixel"] / one["flops_per_pixel"],
        "paper_flops_vs_one_shot": res["paper_patches"]["flops_per_pixel"] / one["flops_per_pixel"],
        "speedup_default_vs_paper": res["paper_patches"]["seconds"] / res["default"]["seconds"],
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
