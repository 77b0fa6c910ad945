"""Train a bundled-model candidate on a lent GPU for a fixed wall-clock budget (issue 16, section 4).

    python benchmarks/gpu_train.py --out $OUT --seconds 420 [--preset tiny] [--batch 32]
        [--set r1_gamma=0.064 ...] [--fork CKPT | --campaign NAME] [--workers 12] [--device cuda] [--tf32]

A campaign (campaigns/NAME, ``infinitygan campaign``) goes to a lent GPU with ``--campaign NAME``
(its committed state, forked with the given constants); back on the CPU machine,
``infinitygan campaign save NAME --checkpoint OUT/ckpt-N.safetensors`` makes the returned
checkpoint the campaign's state, and ``campaign train NAME`` continues it.

The device machine of this workplace gives one command at most 10 minutes and a session 15,
start included, and keeps nothing once it is given back. So this script is the whole check in
one command: it runs ``infinitygan train`` in a scratch folder, stops it with SIGTERM when the
budget is spent (the training loop finishes its iteration and writes a checkpoint), and copies
back to --out only what the next step needs, four files:

- ``ckpt-NNNNNNNN.safetensors``: the whole training checkpoint (G, D, G_ema, Adam states):
  `infinitygan eval --model FILE` measures it, `infinitygan train --fork FILE` continues it;
- ``config.yaml`` (the run's), ``samples.png`` (G_ema's newest periodic sample grid, written with
  each --checkpoint-every) and ``summary.json``
  (device, iterations, images, seconds per iteration, the train command).

The SWD that decides whether a candidate replaces the bundled model is measured afterwards on the
CPU (`infinitygan eval --metric swd --scale 1,8 --num 256`, docs/training.md "The bundled model").
StyleGAN2-ADA's rule for R1 gamma is 0.0002 x 101^2 / batch (0.255 at the preset's batch 8,
0.064 at 32): pass it with --set when the batch changes. Runs on the CPU too (--device cpu), which
is how it is tested.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # the checkout: importable without installing it
sys.path.insert(0, ROOT)

from infinitygan.campaign.runner import run_for  # noqa: E402  (SIGTERM at the budget)


def train_command(args, run: Path) -> list[str]:
    cmd = [sys.executable, "-m", "infinitygan", "train", "--out", str(run), "--iterations", str(args.iterations),
           "--device", args.device, "--checkpoint-every", str(args.checkpoint_every),
           "--sample-every", str(args.checkpoint_every), "--quiet"]
    cmd += ["--fork", args.fork] if args.fork else ["--preset", args.preset, "--data", args.data]
    for opt, value in (("--batch", args.batch), ("--workers", args.workers), ("--seed", args.seed)):
        if value is not None:
            cmd += [opt, str(value)]
    for setting in args.set:
        cmd += ["--set", setting]
    return cmd + (["--tf32"] if args.tf32 else [])


def campaign_checkpoint(name: str, folder: Path) -> Path:
    """campaigns/NAME's committed state as a training checkpoint in ``folder``."""
    from infinitygan.campaign import spec
    from infinitygan.campaign.state import restore_checkpoint
    from infinitygan.errors import UserError

    try:
        c = spec.load(name, ROOT)
        if not c.state_path.is_file():
            raise UserError(f"campaign {name} has no committed state ({c.state_path})")
        return restore_checkpoint(c.state_path, folder)
    except UserError as e:
        raise SystemExit(f"gpu_train.py: {e}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives the four files (the device's $OUT)")
    ap.add_argument("--seconds", type=float, required=True, help="training wall-clock budget")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data", default="procedural")
    ap.add_argument("--fork", default=None, help="continue this training checkpoint instead of a fresh --preset run")
    ap.add_argument("--campaign", default=None,
                    help="continue campaigns/NAME's committed state (as --fork; bring the returned checkpoint "
                         "back with `infinitygan campaign save NAME --checkpoint FILE`)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="data loader processes (default: the CLI's)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--iterations", type=int, default=10_000_000, help="the run's total (the budget stops it first)")
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tf32", action="store_true")
    args = ap.parse_args()
    if args.seconds <= 0:
        raise SystemExit("gpu_train.py: --seconds must be positive")
    if args.fork and args.campaign:
        raise SystemExit("gpu_train.py: pass --fork or --campaign, not both")
    if args.fork and not Path(args.fork).is_file():
        raise SystemExit(f"gpu_train.py: --fork {args.fork}: no such file")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_train.py: no CUDA device (pass --device cpu to run on the CPU)")
        device_name = torch.cuda.get_device_name()
    else:
        device_name = args.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")

    with tempfile.TemporaryDirectory(prefix="gpu-train-") as tmp:
        run = Path(tmp) / "run"
        if args.campaign:
            args.fork = str(campaign_checkpoint(args.campaign, Path(tmp) / "campaign"))
        cmd = train_command(args, run)
        rc, wall = run_for(cmd, args.seconds)
        ckpts = sorted((run / "checkpoints").glob("ckpt-*.safetensors"))
        if not ckpts:
            raise SystemExit(f"gpu_train.py: training wrote no checkpoint (exit code {rc})")
        newest = ckpts[-1]
        shutil.copy2(newest, out / newest.name)
        shutil.copy2(run / "config.yaml", out / "config.yaml")
        samples = sorted((run / "samples").glob("iter-*.png"))
        if samples:
            shutil.copy2(samples[-1], out / "samples.png")
        from infinitygan.io.checkpoint import read_metadata

        meta = read_metadata(newest)
        iteration, images = int(meta["iteration"]), int(meta["images_seen"])
        start = int(read_metadata(args.fork)["iteration"]) if args.fork else 0
        batch = images // iteration
        done = iteration - start
        summary = {"device": device_name, "exit_code": rc, "wall_s": round(wall, 1), "iteration": iteration,
                   "iterations_this_run": done, "images_this_run": done * batch, "batch": batch,
                   "seconds_per_iteration": round(wall / done, 4) if done else None,  # start-up included
                   "checkpoint": newest.name, "command": " ".join(cmd[1:])}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
