"""Training speed of one iteration at this machine's limit (issue 15, section 2).

Measures, for a preset (default ``tiny``) at a batch (default 8) on the CPU:

* iterations / s of the real training loop (``training.loop.train``: data loader, phases, EMA),
  with the run options' defaults (threads, workers) unless --workers / --threads are given;
  timed per iteration from inside one run (warm-up excluded), over whole cycles of the lazy
  regularizers (R1 every ``r1_every``, path length every ``pl_every``);
* the FLOPs of each phase (D, R1, G, path length; the loss with its gradient-of-gradient part,
  then the backward), amortised per iteration, and the achieved GFLOP/s;
* this machine's throughput on the convolutions the model runs (every distinct conv shape of
  an iteration, forward + backward, contiguous and channels_last, the faster of the two),
  weighted by how often an iteration runs it;
* the top ops of torch.profiler over one cycle.

``--compare REV`` also runs the speed measurement on a ``git worktree`` of REV (in a
subprocess, its own code; this file is copied there) and prints both figures side by side. The
two alternate, ``--rounds`` times each (REV, now, REV, now, ...): a shared machine's speed drifts
by tens of percent over minutes, so the speed-up is the median of the rounds' ratios, each taken
between neighbouring runs.

    python benchmarks/train_speed.py --compare b7e76ff
    python benchmarks/train_speed.py --iterations 48 --workers 0 --threads 2 --no-flops
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- loop speed
def loop_speed(preset: str, batch: int, warmup: int, iterations: int, workers: int | None,
               threads: int | None, extra: dict) -> dict:
    """Seconds per iteration of ``train`` after ``warmup`` iterations (timestamps taken at each
    iteration's EMA update, which every version of the loop calls once per iteration)."""
    import torch

    import infinitygan.training.loop as loop
    from infinitygan.config import load_config
    from infinitygan.training.options import RunOptions

    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # cpu_threads honours it
        torch.set_num_threads(threads)
    stamps: list[float] = []
    used_threads: list[int] = []
    ema = loop.ema_update

    def timed_ema(*a, **k):
        ema(*a, **k)
        stamps.append(time.perf_counter())
        used_threads.append(torch.get_num_threads())

    loop.ema_update = timed_ema
    cfg = load_config(preset).with_training(batch_size=batch, iterations=warmup + iterations)
    kw = dict(device="cpu", quiet=True, samples=False, checkpoint_every=10 ** 9, log_every=10 ** 9,
              keep_freed_memory=True)  # as the train command: this benchmark's process ends with its runs
    if workers is not None:
        kw["workers"] = workers
    kw.update(extra)
    opts = RunOptions(**kw)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        loop.train(cfg, "procedural", Path(tmp) / "run", seed=0, options=opts)
        total = time.perf_counter() - t0
    spi = (stamps[-1] - stamps[warmup - 1]) / iterations
    return {"sec_per_iteration": spi, "iterations_per_second": 1.0 / spi, "images_per_second": batch / spi,
            "threads": used_threads[-1], "wall_s": total,
            "options": {k: v for k, v in vars(opts).items() if k in ("workers", "amp")} | extra}


# ---------------------------------------------------------------------------- in-process set-up
def _setup(preset: str, batch: int):
    import torch

    from infinitygan.config import load_config
    from infinitygan.parallel import env as dist_
    from infinitygan.data.datasets import open_dataset
    from infinitygan.data.patches import PatchDataset
    from infinitygan.data.sampling import endless_batches
    from infinitygan.training.inputs import BatchPlan
    from infinitygan.training.nets import build_nets
    from infinitygan.training.phases import Stats, TrainingLoss, uses_pairs
    from infinitygan.training.state import Progress

    cfg = load_config(preset).with_training(batch_size=batch)
    ctx = dist_.DistContext()
    nets = build_nets(cfg, ctx, 0)
    ds = open_dataset("procedural", cfg.training.full_size, cfg.training.pre_resize, seed=0)
    batches = endless_batches(PatchDataset(ds, patch=cfg.generator.patch_size, seed=0), batch, 0, seed=0)
    real, label = next(batches)
    plan = BatchPlan.make(cfg, nets.G.geometry, 0, ctx, pairs=uses_pairs(cfg))
    loss = TrainingLoss(cfg, nets, plan, ctx, None, Progress(), Stats())
    return cfg, torch, nets, loss, real, label


def _cycle(cfg) -> int:
    tc = cfg.training
    return max(tc.r1_every, tc.pl_every, 1)


def _run_cycle(loss, n: int, real, label) -> None:
    """Iterations 0 .. n - 1 of the phase table (every phase due at t), on one real batch."""
    for t in range(n):
        for ph in loss.phases:
            if ph.due(t):
                loss.run(ph, t, real, label)


def conv_flops(x_shape, w_shape, out_shape, transposed: bool) -> int:
    """FLOPs (2 per multiply-add) of one convolution, groups included: each output position of
    a conv (each input position of a transposed conv) takes prod(w_shape) multiply-adds over
    the batch's channels (weight (out, in / groups, k, k), or (in, out / groups, k, k)
    transposed). Its input gradient and its weight gradient take as many each.
    (torch.utils.flop_counter ignores groups in the weight gradient: 32x too many for the
    depthwise blurs of this model.)"""
    from math import prod

    positions = prod((x_shape if transposed else out_shape)[2:]) * x_shape[0]
    return 2 * positions * prod(w_shape)


def _flop_counter():
    """A dispatch mode summing FLOPs: ``conv_flops`` for convolutions and their backward,
    torch.utils.flop_counter's formulas for the rest (matmuls). FlopCounterMode itself is not
    used: its module tracker does not support autograd.grad on a leaf, which R1 needs."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops = 0

        def get_total_flops(self) -> int:
            return self.flops

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func is aten.convolution.default:
                self.flops += conv_flops(args[0].shape, args[1].shape, out.shape, bool(args[6]))
            elif func is aten.convolution_backward.default:
                grad_out, x, w, transposed, mask = args[0], args[1], args[2], bool(args[7]), args[10]
                self.flops += conv_flops(x.shape, w.shape, grad_out.shape, transposed) * (int(mask[0]) + int(mask[1]))
            else:
                f = flop_registry.get(func._overloadpacket)
                if f is not None:
                    self.flops += int(f(*args, **kwargs, out_val=out))
            return out

    return Count()


def phase_flops(preset: str, batch: int) -> dict:
    """FLOPs of each phase's loss (forward, gradient-of-gradient included) and backward."""
    from infinitygan.training.nets import requires_grad

    cfg, torch, nets, loss, real, label = _setup(preset, batch)
    out = {}
    for ph in loss.phases:
        if ph.every <= 0:
            continue
        requires_grad(nets.G, ph.net == "G")
        requires_grad(nets.D, ph.net == "D")
        with _flop_counter() as fwd:
            value, _, _ = getattr(loss, f"_{ph.name}")(0, real, label)
        with _flop_counter() as bwd:
            value.backward()
        for p in nets.g_params + nets.d_params:
            p.grad = None
        out[ph.name] = {"every": ph.every, "loss_gflop": fwd.get_total_flops() / 1e9,
                        "backward_gflop": bwd.get_total_flops() / 1e9}
    for v in out.values():
        v["per_iteration_gflop"] = (v["loss_gflop"] + v["backward_gflop"]) / v["every"]
    out["total_per_iteration_gflop"] = sum(v["per_iteration_gflop"] for v in out.values())
    return out


def conv_shapes(preset: str, batch: int) -> Counter:
    """Every aten.convolution of one cycle of iterations: (shape key, input gradient needed,
    weight gradient needed) -> calls per iteration. The gradients are those autograd will ask
    for (grad mode on and the tensor requiring grad): no weight gradient for the fixed blur
    kernels, none at all for the G forward of the D phase."""
    from torch.utils._python_dispatch import TorchDispatchMode

    cfg, torch, nets, loss, real, label = _setup(preset, batch)
    seen: Counter = Counter()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                x, w = args[0], args[1]
                grad = torch.is_grad_enabled()
                seen[((tuple(x.shape), tuple(w.shape), args[2] is not None, tuple(args[3]), tuple(args[4]),
                       tuple(args[5]), bool(args[6]), tuple(args[7]), int(args[8])),
                      grad and x.requires_grad, grad and w.requires_grad)] += 1
            return func(*args, **(kwargs or {}))

    n = _cycle(cfg)
    with Record():
        _run_cycle(loss, n, real, label)
    return Counter({k: v / n for k, v in seen.items()})


def conv_throughput(shapes: Counter, repeats: int = 5) -> dict:
    """Each conv shape on its own: its forward, and the backward of the gradients training asks
    of it (input, weight, both or none), in the faster of the two memory layouts."""
    import torch

    total_flop = total_s = 0.0
    rows = []
    for (key, need_x, need_w), per_it in shapes.items():
        xs, ws, has_b, stride, pad, dil, transposed, opad, groups = key
        best = None
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(xs).contiguous(memory_format=fmt).requires_grad_(need_x)
            w = torch.randn(ws).requires_grad_(need_w)
            b = torch.zeros(ws[1] * groups if transposed else ws[0], requires_grad=need_w) if has_b else None

            def step():
                with torch.set_grad_enabled(need_x or need_w):
                    y = torch.ops.aten.convolution(x, w, b, stride, pad, dil, transposed, opad, groups)
                    if need_x or need_w:
                        y.backward(torch.ones_like(y))

            with _flop_counter() as fc:
                step()
            flop = fc.get_total_flops()
            for _ in range(2):
                step()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            t = sorted(times)[len(times) // 2]
            if best is None or t < best[1]:
                best = (flop, t, "channels_last" if fmt is torch.channels_last else "contiguous")
        flop, t, fmt = best
        total_flop += per_it * flop
        total_s += per_it * t
        rows.append({"input": xs, "weight": ws, "transposed": transposed, "groups": groups, "per_iteration": per_it,
                     "grads": "x" * need_x + "w" * need_w or "-",
                     "gflop": flop / 1e9, "gflop_per_s": flop / t / 1e9, "best_format": fmt})
    rows.sort(key=lambda r: -r["per_iteration"] * r["gflop"])
    return {"gflop_per_iteration": total_flop / 1e9, "seconds_per_iteration": total_s,
            "gflop_per_s": total_flop / total_s / 1e9, "shapes": rows}


def profile_top(preset: str, batch: int, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    cfg, torch, nets, loss, real, label = _setup(preset, batch)
    n = _cycle(cfg)
    _run_cycle(loss, n, real, label)
    with profile(activities=[ProfilerActivity.CPU]) as p:
        _run_cycle(loss, n, real, label)
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ---------------------------------------------------------------------------- compare
@contextlib.contextmanager
def worktree(rev: str):
    """A git worktree of ``rev`` with this script copied in; yields its root."""
    tmp = Path(tempfile.mkdtemp(prefix="train-speed-"))
    wt = tmp / "wt"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (wt / "benchmarks").mkdir(exist_ok=True)
        shutil.copy(__file__, wt / "benchmarks" / "train_speed_compare.py")
        yield wt
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def speed_subprocess(root: Path, script: Path, argv: list[str]) -> dict:
    """The speed measurement of the code at ``root``, in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(script), *argv, "--speed-only", "--json"], cwd=root, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=16, help="iterations before timing (a whole lazy cycle)")
    ap.add_argument("--iterations", type=int, default=48, help="timed iterations (whole cycles of 16)")
    ap.add_argument("--workers", type=int, default=None, help="data loader processes (default: the run options')")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the run options')")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="another RunOptions field for the speed run (e.g. compile=true)")
    ap.add_argument("--compare", default=None, metavar="REV", help="also measure git revision REV")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each (with --compare)")
    ap.add_argument("--no-flops", action="store_true", help="speed only (no FLOPs, conv benchmark, profile)")
    ap.add_argument("--profile-rows", type=int, default=25)
    ap.add_argument("--speed-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    extra = {}
    for kv in args.option:
        k, _, v = kv.partition("=")
        extra[k] = {"true": True, "false": False}.get(v.lower(), int(v) if v.isdigit() else v)

    speed_argv = ["--preset", args.preset, "--batch", str(args.batch), "--warmup", str(args.warmup),
                  "--iterations", str(args.iterations)]
    if args.workers is not None:
        speed_argv += ["--workers", str(args.workers)]
    if args.threads is not None:
        speed_argv += ["--threads", str(args.threads)]
    if args.speed_only:
        print(json.dumps(loop_speed(args.preset, args.batch, args.warmup, args.iterations, args.workers,
                                    args.threads, extra)))
        return
    result: dict = {"preset": args.preset, "batch": args.batch}
    # the current code in a subprocess too, so that both measurements start from the same state
    now_argv = [*speed_argv, *sum((["--option", o] for o in args.option), [])]
    # FLOPs and conv shapes first (in-process); then rounds of: REV's speed, ours, and the conv
    # micro-benchmark right after ours, so that each round's fraction compares figures measured
    # minutes apart, not across the machine's drift
    shapes = None
    if not args.no_flops:
        import torch

        torch.set_num_threads(args.threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1))
        result["flops"] = phase_flops(args.preset, args.batch)
        shapes = conv_shapes(args.preset, args.batch)
    befores, afters, convs = [], [], []
    with (worktree(args.compare) if args.compare else contextlib.nullcontext()) as wt:
        for _ in range(max(args.rounds, 1) if args.compare or shapes else 1):
            if args.compare:
                befores.append(speed_subprocess(wt, wt / "benchmarks" / "train_speed_compare.py", speed_argv))
            afters.append(speed_subprocess(ROOT, Path(__file__).resolve(), now_argv))
            if shapes is not None:
                torch.set_num_threads(afters[-1]["threads"])
                convs.append(conv_throughput(shapes))
            print("round:" + (f" {args.compare} {befores[-1]['iterations_per_second']:.3f} it/s," if befores else "")
                  + f" now {afters[-1]['iterations_per_second']:.3f} it/s"
                  + (f", convs {convs[-1]['gflop_per_s']:.1f} GFLOP/s" if convs else ""), file=sys.stderr, flush=True)
    if befores:
        ratios = [a["iterations_per_second"] / b["iterations_per_second"] for a, b in zip(afters, befores)]
        result["speedup"] = statistics.median(ratios)
        result["rounds"] = [{"before": b["iterations_per_second"], "after": a["iterations_per_second"], "ratio": r}
                            for b, a, r in zip(befores, afters, ratios)]
        mid = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
        result["before"] = dict(befores[mid], revision=args.compare)
    else:
        mid = len(afters) // 2
    result["after"] = afters[mid]
    if shapes is not None:
        gflop = result["flops"]["total_per_iteration_gflop"]
        fractions = [gflop * a["iterations_per_second"] / c["gflop_per_s"] for a, c in zip(afters, convs)]
        result["fractions"] = fractions
        result["conv"] = convs[mid]
        result["achieved_gflop_per_s"] = gflop * afters[mid]["iterations_per_second"]
        result["fraction_of_conv_throughput"] = statistics.median(fractions)
        prof = profile_top(args.preset, args.batch, args.profile_rows)
    if args.json:
        print(json.dumps(result))
        return
    report(result)
    if shapes is not None:
        print("\ntorch.profiler, one cycle of 16 iterations (in-process, data excluded):\n" + prof)


def report(r: dict) -> None:
    def speed_line(name, s):
        print(f"{name:>8}: {s['iterations_per_second']:.3f} it/s ({s['sec_per_iteration']:.3f} s/it, "
              f"{s['images_per_second']:.1f} img/s), threads {s['threads']}, options {s['options']}")

    print(f"preset {r['preset']}, batch {r['batch']}")
    if "before" in r:
        speed_line(r["before"]["revision"], r["before"])
    speed_line("now", r["after"])
    if "speedup" in r:
        rounds = ", ".join(f"{x['before']:.3f} -> {x['after']:.3f} ({x['ratio']:.2f}x)" for x in r["rounds"])
        print(f"speedup: {r['speedup']:.2f}x (median of {len(r['rounds'])} alternating rounds, it/s: {rounds})")
    if "conv" not in r:
        return
    print("\n| phase | every | loss GFLOP (fwd + grad-of-grad) | backward GFLOP | GFLOP / iteration (amortised) |")
    print("|---|---|---|---|---|")
    for name, v in r["flops"].items():
        if isinstance(v, dict):
            print(f"| {name} | {v['every']} | {v['loss_gflop']:.3f} | {v['backward_gflop']:.3f} | "
                  f"{v['per_iteration_gflop']:.3f} |")
    print(f"| total | | | | {r['flops']['total_per_iteration_gflop']:.3f} |")
    c = r["conv"]
    print(f"\nachieved: {r['achieved_gflop_per_s']:.1f} GFLOP/s; the model's convolutions alone "
          f"(fwd + bwd, best layout): {c['gflop_per_iteration']:.3f} GFLOP in {c['seconds_per_iteration']:.3f} s "
          f"= {c['gflop_per_s']:.1f} GFLOP/s; fraction: {r['fraction_of_conv_throughput']:.0%} (median of "
          f"rounds: {', '.join(f'{x:.0%}' for x in r['fractions'])})")
    print("\n| conv input | weight | transposed | groups | gradients | calls / it | GFLOP (fwd+bwd) | GFLOP/s | layout |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in c["shapes"][:15]:
        print(f"| {s['input']} | {s['weight']} | {s['transposed']} | {s['groups']} | {s['grads']} | "
              f"{s['per_iteration']:.3g} | {s['gflop']:.4f} | {s['gflop_per_s']:.1f} | {s['best_format']} |")


if __name__ == "__main__":
    main()
