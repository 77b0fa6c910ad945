"""Peak memory and time of one training iteration with and without activation checkpointing.

For a preset (default ``paper-389``) at each batch (default 1 and 4), on the CPU, this runs the
four phases of iteration 0 (D, R1, G, path length: all are due at iteration 0) of the real
training code (``training.nets.build_nets``, ``training.phases.TrainingLoss.run``: loss,
backward, finite guard, Adam step) once without and once with ``checkpoint_activations``, each
case in a fresh child process, and prints per phase:

* ``tensor_mb``: the peak of the bytes held by tensors during the phase, above those held when
  it starts (weights, Adam moments, the batch), from torch.profiler's allocation records (every
  allocation and free of PyTorch's CPU allocator, summed in time order). It counts the
  activations kept for the backward, the gradients of the trained network and the temporaries of
  the largest op: what a GPU's caching allocator would have to hold (before fragmentation).
* ``rss_mb``: the process's peak resident memory during the phase above its resident memory when
  the phase starts (Linux: ``/proc/self/clear_refs`` resets the peak, ``VmHWM`` reads it; freed
  memory is returned to the kernel with ``malloc_trim`` before each phase). It adds what does not
  go through PyTorch's allocator (oneDNN's scratch buffers, allocator slack); it is what the OS sees.
* ``seconds`` / ``cpu_seconds`` of the phase (on a shared machine the wall seconds include the
  time the process waited for a core; the CPU seconds do not).

The Adam moments are created before the measurement (an Adam step with zero gradients leaves
the weights as they are), so that no phase counts them. The iteration's peak is the largest
phase's; its time per iteration is amortised as training runs it: D and G every iteration, R1
every ``r1_every`` and path length every ``pl_every`` iterations.

On a shared machine the seconds are contended: compare the with/without ratio of one run
(``--rounds`` alternates the two cases, the ratio is taken between neighbours).

    python benchmarks/activation_memory.py                      # paper-389, batch 1 and 4
    python benchmarks/activation_memory.py --batch 1 2 --threads 1 --json out.json
    python benchmarks/activation_memory.py --preset tiny --batch 8
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- the child
def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status")


def _return_freed_memory() -> None:
    """glibc: every block over 1 MiB its own mapping, unmapped when freed (a fixed threshold turns
    off glibc's adaptive one, which after the first large free serves blocks of up to 32 MiB from
    a heap that only shrinks from its top). Then the RSS follows the live memory; without it the
    RSS of a phase is the heap's fragmented high-water mark."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _settle() -> float:
    """Free what can be freed, return it to the kernel, reset the peak RSS; -> RSS (MB)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _tensor_peak_mb(prof) -> float:
    """Peak of the running sum of the profiler's allocation records (bytes, + alloc / - free)."""
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak / 2 ** 20


def child(preset: str, batch: int, checkpoint: bool, threads: int, phases: list[str]) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(ROOT))
    from infinitygan.config import load_config
    from infinitygan.parallel.env import DistContext
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.nets import build_nets
    from infinitygan.training.phases import Stats, TrainingLoss, colour_pairs_only, uses_pairs
    from infinitygan.training.state import Progress

    torch.set_num_threads(threads)
    _return_freed_memory()
    cfg = load_config(preset).with_training(batch_size=batch)
    ctx = DistContext()
    nets = build_nets(cfg, ctx, 0, checkpoint_activations=checkpoint)
    for params, optim in ((nets.g_params, nets.g_optim), (nets.d_params, nets.d_optim)):
        for p in params:  # the Adam moments exist before any phase (the weights stay as they are)
            p.grad = torch.zeros_like(p)
        optim.step()
        optim.zero_grad(set_to_none=True)
    plan = BatchPlan.make(cfg, nets.G.geometry, 0, ctx, pairs=uses_pairs(cfg), own_phase=colour_pairs_only(cfg))
    loss = TrainingLoss(cfg, nets, plan, ctx, None, Progress(), Stats())
    P = cfg.generator.patch_size
    gen = torch.Generator().manual_seed(0)
    real = (torch.rand(batch, 3, P, P, generator=gen) * 2 - 1).contiguous(memory_format=torch.channels_last)
    label = torch.rand(batch, generator=gen) * 2 - 1
    mb = 2 ** 20
    res = {"preset": preset, "batch": batch, "checkpoint_activations": checkpoint, "threads": threads,
           "patch": P, "params_mb": {"G": sum(p.numel() * p.element_size() for p in nets.g_params) / mb,
                                     "D": sum(p.numel() * p.element_size() for p in nets.d_params) / mb},
           "phases": {}}
    for ph in loss.phases:
        if ph.name not in phases or not ph.due(0):
            continue
        rss0 = _settle()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            t0, c0 = time.perf_counter(), time.process_time()
            ok = loss.run(ph, 0, real, label)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss = _status_mb("VmHWM") - rss0
        res["phases"][ph.name] = {"tensor_mb": round(_tensor_peak_mb(prof), 1), "rss_mb": round(rss, 1),
                                  "seconds": round(sec, 2), "cpu_seconds": round(cpu, 2), "finite": ok}
        del prof
    tc = cfg.training
    every = {"d": 1, "g": 1, "r1": tc.r1_every, "pl": tc.pl_every}
    ph = res["phases"]
    res["peak_tensor_mb"] = max(v["tensor_mb"] for v in ph.values())
    res["peak_rss_mb"] = max(v["rss_mb"] for v in ph.values())
    res["seconds_per_iteration"] = round(sum(v["seconds"] / every[k] for k, v in ph.items()), 2)
    res["cpu_seconds_per_iteration"] = round(sum(v["cpu_seconds"] / every[k] for k, v in ph.items()), 2)
    return res


# ------------------------------------------------------------------------------ the parent
def run_case(args, batch: int, checkpoint: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--preset", args.preset, "--batch", str(batch),
           "--threads", str(args.threads), "--phases", *args.phases] + (["--checkpoint"] if checkpoint else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        return {"batch": batch, "checkpoint_activations": checkpoint, "error": f"exit {out.returncode}: " + " | ".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-389")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of each child")
    ap.add_argument("--phases", nargs="+", default=["d", "r1", "g", "pl"])
    ap.add_argument("--rounds", type=int, default=1, help="without/with pairs per batch (time ratios)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.preset, args.batch[0], args.checkpoint, args.threads, args.phases)))
        return
    results = []
    for batch in args.batch:
        for r in range(args.rounds):
            pair = {}
            for ck in (False, True):
                res = run_case(args, batch, ck)
                results.append(res)
                pair[ck] = res
                print(json.dumps(res), flush=True)
            off, on = pair[False], pair[True]
            if "error" in off or "error" in on:
                continue
            summary = {"batch": batch, "round": r,
                       "tensor_ratio": round(on["peak_tensor_mb"] / off["peak_tensor_mb"], 3),
                       "rss_ratio": round(on["peak_rss_mb"] / off["peak_rss_mb"], 3),
                       "time_ratio": round(on["seconds_per_iteration"] / off["seconds_per_iteration"], 3),
                       "cpu_time_ratio": round(on["cpu_seconds_per_iteration"] / off["cpu_seconds_per_iteration"], 3),
                       "phase_tensor_ratio": {k: round(on["phases"][k]["tensor_mb"] / off["phases"][k]["tensor_mb"], 3)
                                              for k in off["phases"]},
                       "phase_time_ratio": {k: round(on["phases"][k]["seconds"] / off["phases"][k]["seconds"], 3)
                                            for k in off["phases"]},
                       "phase_cpu_time_ratio": {k: round(on["phases"][k]["cpu_seconds"] / off["phases"][k]["cpu_seconds"], 3)
                                                for k in off["phases"]}}
            results.append(summary)
            print(json.dumps(summary), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
