"""Train the models of the miniature Table 1 (docs/evaluation.md) on an equal budget of
PROCESS CPU SECONDS, which stays fair when the machine's cores are shared with other work.

    python benchmarks/table1_train.py --budget 600 --out runs/table1

Each model is `infinitygan train --data procedural --workers 0` in its own process (one intra-op
thread: OMP_NUM_THREADS=1, niced), started together; this script polls each process's CPU time
(user + system, /proc/PID/stat, Linux) and the checkpoints it writes (every --checkpoint-every
iterations), records the CPU time at which each checkpoint appeared, and stops a run (SIGTERM)
once its CPU time reaches the budget (touch OUT/STOP to lower the budget of all runs to the
smallest CPU time any live run has reached, e.g. when time runs out). The model of a run is its newest checkpoint written
within the budget. OUT/budget.json lists, per model, the checkpoint, its iteration and CPU
seconds.

A change of constants part-way (e.g. a lower learning rate for every model alike) is a fork:

    python benchmarks/table1_train.py --fork runs/table1 --change lr=0.001 --budget 6000 --out runs/table1-lr

starts each model's run in OUT as `infinitygan train --fork` of its model in SRC (the checkpoint
SRC/budget.json names, the newest within SRC's budget) with `--set lr=0.001`, its CPU seconds
counted on from that checkpoint's; `--resume` then continues OUT as usual.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {
    # the four rows of the paper's Table 1 at half the tiny preset's resolution (reference 64):
    # the models that leave initialisation within a 2-core CPU budget (benchmarks/table1/mini/)
    "mini": {name: ["--config", str(HERE / "table1" / "mini" / f"{name}.yaml")]
             for name in ("infinitygan", "stylegan2-nci", "stylegan2-nci-patched", "stylegan2-nci-pfg")},
    # the first attempt: three models at the tiny preset's resolution (reference 128)
    "tiny": {"infinitygan-tiny": ["--preset", "tiny"],
             "stylegan2-nci": ["--config", str(HERE / "table1" / "stylegan2-nci-tiny.yaml")],
             "stylegan2-nci-pfg": ["--config", str(HERE / "table1" / "stylegan2-nci-pfg-tiny.yaml")]},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included, children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime


def checkpoints(run: Path) -> list[Path]:
    d = run / "checkpoints"
    return sorted(d.glob("ckpt-*.safetensors")) if d.is_dir() else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, required=True, help="CPU seconds per model")
    ap.add_argument("--out", default="runs/table1")
    ap.add_argument("--checkpoint-every", type=int, default=20)
    ap.add_argument("--set", choices=sorted(SETS), default="mini", help="which model set (default: mini)")
    ap.add_argument("--models", default=None, help="comma-separated subset of the set's models")
    ap.add_argument("--nice", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the configs')")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs in --out (e.g. with a larger --budget): each from its newest "
                         "checkpoint, its CPU seconds counted on from where OUT/budget.json left it")
    ap.add_argument("--fork", metavar="SRC", default=None,
                    help="start each model's run in --out as a fork of its model in SRC (the checkpoint "
                         "SRC/budget.json names), CPU seconds counted on from that checkpoint's")
    ap.add_argument("--change", action="append", default=[], metavar="KEY=VALUE",
                    help="with --fork: a training constant to change for every model alike (train's --set), "
                         "e.g. --change lr=0.001; repeatable")
    args = ap.parse_args()
    if args.change and not args.fork:
        ap.error("--change needs --fork (a run's constants change only in a fork)")
    if args.fork and args.resume:
        ap.error("--fork starts new runs in --out; --resume continues them (not both)")
    MODELS = SETS[args.set]
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)} in set {args.set} (choose from {', '.join(MODELS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs, record, base = {}, {}, {}
    if args.resume and not (out / "budget.json").is_file():
        ap.error(f"--resume: no {out / 'budget.json'} (start the runs without --resume first)")
    previous = json.loads((out / "budget.json").read_text()) if args.resume else {}
    source = {}
    if args.fork:
        src = Path(args.fork) / "budget.json"
        if not src.is_file():
            ap.error(f"--fork: no {src}")
        if Path(args.fork).resolve() == out.resolve():
            ap.error("--fork: SRC and --out must differ (the source runs are only read)")
        source = json.loads(src.read_text())
    for name in names:
        run = out / name
        if args.fork:
            if not (source.get(name) or {}).get("checkpoint"):
                ap.error(f"--fork: no checkpoint of {name} in {src}")
            if checkpoints(run):
                ap.error(f"--fork: {run} already has checkpoints (continue it with --resume)")
            base[name], prev = float(source[name]["checkpoint_cpu_s"]), {}
            what = ["--fork", source[name]["checkpoint"]] + [a for c in args.change for a in ("--set", c)]
        elif args.resume:
            if name not in previous or not checkpoints(run):
                ap.error(f"--resume: no run of {name} in {out} (budget.json or checkpoints missing)")
            prev = previous[name]
            # the newest checkpoint is the one written on SIGTERM at stopped_at_cpu (or the newest seen)
            base[name] = prev.get("stopped_at_cpu") or max(v for v in prev["checkpoints"].values() if v is not None)
            what = ["--resume"]
        else:
            base[name], prev, what = 0.0, {}, MODELS[name]
        cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "infinitygan", "train", *what,
               "--data", "procedural", "--out", str(run), "--iterations", "1000000", "--workers", "0",
               "--device", "cpu", "--checkpoint-every", str(args.checkpoint_every),
               "--sample-every", "1000000", "--quiet"] + (["--batch", str(args.batch)] if args.batch else [])
        log = open(out / f"{name}.log", "a" if args.resume else "w")
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        record[name] = {"command": " ".join(cmd[3:]), "checkpoints": dict(prev.get("checkpoints", {})),
                        "started": time.time(), "resumed_at_cpu": base[name] if args.resume else None,
                        "forked_from": prev.get("forked_from") or (
                            {"checkpoint": source[name]["checkpoint"], "cpu_s": base[name], "change": args.change}
                            if args.fork else None)}
        for c in checkpoints(run):  # on --resume: the checkpoint written when the last run was stopped
            record[name]["checkpoints"].setdefault(c.name, base[name])
    live = dict(procs)
    while live:
        time.sleep(2)
        if (out / "STOP").exists():  # stop all now, at the smallest CPU time any run reached
            args.budget = min(base[n] + cpu_seconds(p.pid) for n, p in live.items())
            (out / "STOP").unlink()
        for name, p in list(live.items()):
            run = out / name
            try:
                cpu = base[name] + cpu_seconds(p.pid)
            except (FileNotFoundError, ProcessLookupError):
                cpu = None
            for c in checkpoints(run):
                record[name]["checkpoints"].setdefault(c.name, cpu)
                kept = run / "kept"  # the run keeps only its newest 3: hard links keep all
                kept.mkdir(exist_ok=True)
                if not (kept / c.name).exists():
                    try:
                        os.link(c, kept / c.name)
                    except OSError:
                        pass
            if p.poll() is not None:
                record[name]["exit"] = p.returncode
                del live[name]
            elif cpu is not None and cpu >= args.budget:
                p.send_signal(signal.SIGTERM)
                p.wait()
                record[name]["stopped_at_cpu"] = cpu
                record[name]["wall"] = time.time() - record[name]["started"]
                del live[name]
        summary = {}
        for name, r in record.items():
            ok = {k: v for k, v in r["checkpoints"].items() if v is not None and v <= args.budget}
            best = max(ok) if ok else None
            summary[name] = {**r, "budget_cpu_s": args.budget, "checkpoint": str(out / name / "kept" / best) if best else None,
                             "checkpoint_cpu_s": ok.get(best) if best else None,
                             "iteration": int(best[5:13]) if best else None}
        tmp = out / "budget.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, out / "budget.json")
    print(json.dumps({k: {"checkpoint": v["checkpoint"], "iteration": v["iteration"],
                          "cpu_s": v["checkpoint_cpu_s"]} for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
