"""What a session does with a campaign: restore its run, train for a budget, save, evaluate.

A session that starts on a fresh checkout (no runs/NAME) calls ``train``: the run is restored
from the committed state and continued with ``train --resume``, stopped by SIGTERM when the
budget is spent (the training loop finishes its iteration and checkpoints). Before it stops, the
session calls ``save`` (the newest checkpoint -> campaigns/NAME/state.safetensors, one progress
row) and commits campaigns/NAME. Training wall time is counted in runs/NAME/campaign.json until a
``save`` adds it to the state's ``train_seconds``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UserError
from ..io import runs
from ..io.checkpoint import read_metadata
from . import progress
from .spec import Campaign
from .state import read_state, restore_checkpoint, save_state

CLOCK = "campaign.json"


def run_for(cmd: list[str], seconds: float | None, env: dict | None = None, cwd: str | Path | None = None
            ) -> tuple[int, float]:
    """Run ``cmd``; after ``seconds`` (None: no limit) send it SIGTERM and wait for it to finish
    (a training run checkpoints and exits). Returns (exit code, wall seconds)."""
    rc, wall, _ = run_budgeted(cmd, seconds, None, env, cwd)
    return rc, wall


def _cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc; None when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_budgeted(cmd: list[str], wall_s: float | None, cpu_s: float | None, env: dict | None = None,
                 cwd: str | Path | None = None, poll: float = 1.0) -> tuple[int, float, float]:
    """Run ``cmd`` until it ends, or send it SIGTERM once it has run ``wall_s`` seconds of wall
    time or used ``cpu_s`` CPU seconds (None: no limit), then wait for it. Returns (exit code,
    wall seconds, CPU seconds of the child and the children it waited for)."""
    if cpu_s is not None and _cpu_of(os.getpid()) is None:
        raise UserError("a CPU-time budget needs Linux's /proc: use a wall-clock budget")
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd)
    try:
        while True:
            left = None if wall_s is None else wall_s - (time.perf_counter() - t0)
            try:
                rc = proc.wait(timeout=poll if left is None else max(min(poll, left), 0.01))
                break
            except subprocess.TimeoutExpired:
                used = _cpu_of(proc.pid) if cpu_s is not None else None
                if (left is not None and left <= 0) or (used is not None and used >= cpu_s):
                    proc.send_signal(signal.SIGTERM)
                    rc = proc.wait()
                    break
    except BaseException:  # Ctrl-C here: the child got it too; let it checkpoint
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        raise
    return rc, time.perf_counter() - t0, _children_cpu() - cpu0


# ------------------------------------------------------------------------- clock
def _clock(c: Campaign) -> dict:
    path = c.run / CLOCK
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _set_clock(c: Campaign, wall: float, cpu: float) -> None:
    from ..io.images import atomic_path

    c.run.mkdir(parents=True, exist_ok=True)
    with atomic_path(c.run / CLOCK) as tmp:
        tmp.write_text(json.dumps({"pending_seconds": round(wall, 1), "pending_cpu_seconds": round(cpu, 1)}) + "\n")


def pending_seconds(c: Campaign, key: str = "pending_seconds") -> float:
    """Training wall seconds (``pending_cpu_seconds``: CPU seconds) of runs/NAME not yet in the state."""
    v = _clock(c).get(key, 0.0)
    return float(v) if isinstance(v, (int, float)) else 0.0


def pending_cpu_seconds(c: Campaign) -> float:
    return pending_seconds(c, "pending_cpu_seconds")


# ------------------------------------------------------------------------ status
def state_meta(c: Campaign) -> dict[str, str] | None:
    return read_metadata(c.state_path) if c.state_path.is_file() else None


def run_iteration(c: Campaign) -> int | None:
    """The iteration of runs/NAME's newest checkpoint (None: no checkpoint)."""
    ckpts = runs.list_checkpoints(c.run)
    if not ckpts:
        return None
    return int(runs.load_newest_checkpoint(c.run)[3]["iteration"])


def status(c: Campaign) -> dict:
    meta = state_meta(c)
    rows = progress.read(c.progress_path)
    return {"campaign": c.name, "goal": c.goal,
            "state_iteration": int(meta["iteration"]) if meta else None,
            "state_images": int(meta.get("images_seen", 0)) if meta else None,
            "train_hours": round(_spent(meta, "train_seconds") / 3600, 3),
            "cpu_hours": round(_spent(meta, "cpu_seconds") / 3600, 3),
            "run": str(c.run), "run_iteration": run_iteration(c),
            "pending_hours": round(pending_seconds(c) / 3600, 3),
            "pending_cpu_hours": round(pending_cpu_seconds(c) / 3600, 3),
            "last_eval": rows_last(rows, "eval")}


def rows_last(rows: list[progress.Row], event: str) -> dict | None:
    for r in reversed(rows):
        if r.event == event:
            return {"iteration": r.iteration, **r.metrics}
    return None


# ----------------------------------------------------------------------- restore
def restore(c: Campaign) -> Path | None:
    """Bring runs/NAME up to the committed state: write the state as a checkpoint when the run
    has none or an older one. Returns the checkpoint written (None: nothing to do)."""
    meta = state_meta(c)
    if meta is None:
        return None
    have = run_iteration(c)
    if have is not None and have >= int(meta["iteration"]):
        return None
    path = restore_checkpoint(c.state_path, c.run)
    _set_clock(c, 0.0, 0.0)
    return path


# ------------------------------------------------------------------------- train
def train(c: Campaign, seconds: float | None = None, iterations: int | None = None, cpu_seconds: float | None = None
          ) -> dict:
    """Continue the campaign (restoring runs/NAME first when needed, else starting it) for at most
    ``seconds`` of wall time and ``cpu_seconds`` of the training process's CPU time (None: no
    limit), up to ``iterations`` in all (None: the run's own total)."""
    for what, v in (("wall-clock", seconds), ("CPU-time", cpu_seconds)):
        if v is not None and v <= 0:
            raise UserError(f"the {what} budget must be positive, got {v:g} s")
    restored = restore(c)
    have = run_iteration(c)
    if have is None:
        cmd = c.start_command() + (["--iterations", str(iterations)] if iterations is not None else [])
    else:
        if iterations is not None and iterations <= have:
            raise UserError(f"campaign {c.name} is at iteration {have}: --iterations must be larger")
        if iterations is None:
            iterations = _campaign_total(c)
        cmd = c.resume_command(iterations)
    env = dict(os.environ, OMP_NUM_THREADS=str(c.threads), PYTHONUNBUFFERED="1")
    rc, wall, cpu = run_budgeted([sys.executable, "-m", "infinitygan", *cmd], seconds, cpu_seconds, env=env, cwd=c.root)
    _set_clock(c, pending_seconds(c) + wall, pending_cpu_seconds(c) + cpu)
    if rc not in (0, 128 + signal.SIGTERM):
        raise UserError(f"campaign {c.name}: training exited with code {rc} (command: infinitygan {' '.join(cmd)})")
    return {"campaign": c.name, "restored": str(restored) if restored else None, "command": " ".join(cmd),
            "exit_code": rc, "stopped_by_budget": rc == 128 + signal.SIGTERM, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "iteration": run_iteration(c)}


def _campaign_total(c: Campaign) -> int | None:
    """The campaign's total (its start command's --iterations) when the run's own config stops
    short of it (a fork leg made with `--iterations N+1`); None: the run's own total stands."""
    from ..training.state import load_run_config

    total = c.total_iterations
    if total is None:
        return None
    own = int(load_run_config(c.run).training.iterations)
    return total if own < total else None


# -------------------------------------------------------------------------- save
def save(c: Campaign, note: str = "", extra_seconds: float = 0.0, checkpoint: str | Path | None = None,
         extra_cpu_seconds: float = 0.0) -> dict:
    """runs/NAME's newest checkpoint (or ``checkpoint``: one trained elsewhere, e.g. on a lent GPU
    by benchmarks/gpu_train.py, or a fork that starts a new leg) -> campaigns/NAME/state.safetensors
    (replaced atomically), and one ``save`` row in the progress log. Refuses to replace a newer
    state with an older checkpoint."""
    if extra_seconds < 0 or extra_cpu_seconds < 0:
        raise UserError(f"--train-seconds and --cpu-seconds must be >= 0, got {extra_seconds:g}, {extra_cpu_seconds:g}")
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        meta = read_metadata(ckpt)
        if not runs.is_training_checkpoint(meta):
            raise UserError(f"{ckpt} is not a training checkpoint (kind={meta.get('kind')!r})")
    elif not runs.list_checkpoints(c.run):
        raise UserError(f"campaign {c.name}: {c.run} holds no checkpoint to save (run `campaign train {c.name}`)")
    else:
        ckpt, _, _, meta = runs.load_newest_checkpoint(c.run)
    old = state_meta(c)
    if old is not None and int(old["iteration"]) > int(meta["iteration"]):
        raise UserError(f"campaign {c.name}: the committed state is at iteration {old['iteration']}, newer than "
                        f"{c.run}'s newest checkpoint ({meta['iteration']}); restore it first")
    total = _spent(old, "train_seconds") + pending_seconds(c) + float(extra_seconds)
    cpu = _spent(old, "cpu_seconds") + pending_cpu_seconds(c) + float(extra_cpu_seconds)
    c.folder.mkdir(parents=True, exist_ok=True)
    saved = save_state(c.state_path, ckpt, c.moments, total, cpu)
    aside = None
    if checkpoint is not None:
        aside = _set_aside(c, ckpt)
    _set_clock(c, 0.0, 0.0)
    if checkpoint is not None:
        restore(c)  # runs/NAME continues from it (config.yaml included: a fork's --set holds)
    row = progress.Row("save", int(saved["iteration"]), int(saved.get("images_seen", 0)), total / 3600, cpu / 3600,
                       note=note or f"state from {ckpt.name}")
    progress.append(c.progress_path, row)
    out = {"campaign": c.name, "state": str(c.state_path), "iteration": row.iteration, "images": row.images,
           "train_hours": round(row.train_hours, 3), "cpu_hours": round(row.cpu_hours, 3),
           "bytes": c.state_path.stat().st_size}
    if aside is not None:
        out["previous_run"] = str(aside)
    return out


def _set_aside(c: Campaign, ckpt: Path) -> Path | None:
    """Before runs/NAME continues from a checkpoint trained elsewhere (a fork, a lent GPU's run),
    move the run that was there to runs/NAME.before-ITERATION[-k]: left in place, its config.yaml
    (a fork's changed constants lost) or its newer checkpoints would win over the saved state.
    Nothing is deleted. None when there was no run, or ``ckpt`` is the run's own."""
    if not c.run.exists() or not runs.list_checkpoints(c.run):
        return None
    if ckpt.resolve().is_relative_to(c.run.resolve()):
        return None
    have = run_iteration(c)
    aside = c.run.with_name(f"{c.run.name}.before-{have}")
    k = 1
    while aside.exists():
        k += 1
        aside = c.run.with_name(f"{c.run.name}.before-{have}-{k}")
    c.run.rename(aside)
    return aside


def _spent(meta: dict | None, key: str) -> float:
    try:
        return float((meta or {}).get(key, 0))
    except ValueError:
        return 0.0


# -------------------------------------------------------------------------- eval
def _hours_at(c: Campaign, iteration: int) -> tuple[float, float, bool]:
    """(train hours, CPU hours, interpolated) of the campaign when it was at ``iteration``: its clock
    now (the state's and the pending seconds) at the run's newest iteration, interpolated linearly
    in iterations from the state's iteration (or from 0) for an earlier checkpoint."""
    meta = state_meta(c)
    now = ((_spent(meta, "train_seconds") + pending_seconds(c)) / 3600,
           (_spent(meta, "cpu_seconds") + pending_cpu_seconds(c)) / 3600)
    newest = run_iteration(c) or 0
    if iteration >= newest:
        return now[0], now[1], False
    saved_at = int(meta["iteration"]) if meta else 0
    then = (_spent(meta, "train_seconds") / 3600, _spent(meta, "cpu_seconds") / 3600)
    if iteration == saved_at:
        return then[0], then[1], False
    if iteration > saved_at:
        t = (iteration - saved_at) / max(newest - saved_at, 1)
        return then[0] + t * (now[0] - then[0]), then[1] + t * (now[1] - then[1]), True
    t = iteration / max(saved_at, 1)
    return t * then[0], t * then[1], True


def evaluate(c: Campaign, num: int | None = None, scales: tuple[int, ...] | None = None,
             seeds: tuple[int, ...] | None = None, note: str = "", progress_bar: bool = False,
             checkpoint: str | Path | None = None) -> dict:
    """SWD (x1e3, the project's protocol) of runs/NAME's newest checkpoint (or of ``checkpoint``,
    e.g. one kept by ``train --keep-every``: a point of the learning curve), the mean over the eval
    seeds at each scale, appended to the progress log as ``swd_{N}x``."""
    import torch

    from ..api import load_model
    from ..metrics.evaluate import default_cache_dir, evaluate as run_eval

    if checkpoint is None and not runs.list_checkpoints(c.run):
        restore(c)
    if checkpoint is None and not runs.list_checkpoints(c.run):
        raise UserError(f"campaign {c.name}: nothing to evaluate (no state, no run)")
    spec = c.eval
    num, scales, seeds = num or spec.num, tuple(scales or spec.scales), tuple(seeds or spec.seeds)
    if checkpoint is None:
        _, _, _, meta = runs.load_newest_checkpoint(c.run)
        model = load_model(c.run)
    else:
        meta = read_metadata(checkpoint)
        if meta.get("kind") != runs.KIND:
            raise UserError(f"{checkpoint}: not a training checkpoint (campaign eval --checkpoint)")
        model = load_model(checkpoint)
    values: dict[str, list[float]] = {}
    for seed in seeds:
        for row in run_eval(model, spec.data, "swd", list(scales), ["paper"], num, seed=seed,
                            device=torch.device("cpu"), cache_dir=default_cache_dir(), progress=progress_bar,
                            model_name=c.name):
            col = "swd_patch" if row["scale"] == "patch" else f"swd_{row['scale']}x"
            values.setdefault(col, []).append(float(row["value"]))
    metrics = {k: sum(v) / len(v) for k, v in values.items()}
    hours, cpu_hours, interpolated = _hours_at(c, int(meta["iteration"]))
    seed_note = f"num {num}, eval seeds {','.join(map(str, seeds))}" + ("; hours interpolated" if interpolated else "")
    progress.append(c.progress_path, progress.Row("eval", int(meta["iteration"]), int(meta.get("images_seen", 0)),
                                                  hours, cpu_hours, metrics,
                                                  note=f"{seed_note}; {note}" if note else seed_note))
    return {"campaign": c.name, "iteration": int(meta["iteration"]), **{k: round(v, 2) for k, v in metrics.items()}}


def check_state(c: Campaign) -> dict:
    """Read the committed state (UserError when it is missing or not a campaign state)."""
    if not c.state_path.is_file():
        raise UserError(f"campaign {c.name} has no committed state ({c.state_path})")
    _, cfg, meta = read_state(c.state_path)
    return {"iteration": int(meta["iteration"]), "config": cfg.name, "moments": meta.get("moments")}
