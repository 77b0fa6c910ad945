"""``--nproc N``: run a command in N local processes joined as one torch.distributed group,
through torch's elastic launch API (what ``torchrun --standalone`` runs), with our exit codes.

Under plain torchrun a failing rank's one line is followed by torchrun's ChildFailedError report
(~40 lines) and status 1, and Ctrl-C ends in a SignalException traceback. Here the ranks' own
output is all the user sees: rank 0 says what happened in one line (set-up errors are gathered,
a failed rank is reported by the writer), other ranks stay silent on interrupts, and the
launcher returns 0, 2 (bad input or a failed rank), 130 (Ctrl-C) or 143 (SIGTERM).

Threads: each rank gets its share of the cores this process may use, OMP_NUM_THREADS =
max(1, cores // N) in the ranks' environment (``rank_environment``), unless the user set
OMP_NUM_THREADS (then every rank takes that). Without it N CPU ranks would each start one
intra-op thread per core, N times too many, spinning in each other's barriers.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid

from ..errors import UserError

#: most local processes of one command
MAX_NPROC = 256
#: set beside OMP_NUM_THREADS when ``launch`` chose it (not the user): training then still leaves
#: cores to its data-loader workers (``training.options.cpu_threads``)
THREADS_FROM_NPROC = "INFINITYGAN_NPROC_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def rank_environment(nproc: int, environ=None) -> dict[str, str]:
    """What ``launch`` adds to the environment of ``nproc`` local ranks: OMP_NUM_THREADS, each
    rank's share of the cores (max(1, cores // nproc)), unless ``environ`` (default os.environ)
    sets OMP_NUM_THREADS already."""
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(max(1, available_cores() // max(int(nproc), 1))), THREADS_FROM_NPROC: "1"}


def relaunch(ctx, nproc: int | None) -> None:
    """In a command: with ``--nproc N`` (N > 1) run this command line in N ranks and exit with
    their status; otherwise return and let the command run here. The command line is the one
    ``infinitygan.cli.main`` dispatched (``ctx.obj["argv"]``)."""
    if nproc is None or nproc == 1:
        return
    ctx.exit(launch(nproc, command_line(ctx)))


def command_line(ctx) -> list[str]:
    """The arguments ``infinitygan.cli.main`` dispatched to this command (what ``--nproc`` runs again)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, dict) or "argv" not in obj:
        raise UserError("--nproc runs the command line again: start the command through infinitygan.cli.main")
    return list(obj["argv"])


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m infinitygan ARGV`` in ``nproc`` local ranks; the exit status to return."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from .env import launched

    if launched():
        raise UserError("--nproc starts its own ranks: do not combine it with torchrun")
    if not 1 <= nproc <= MAX_NPROC:
        raise UserError(f"--nproc must be in 1..{MAX_NPROC}, got {nproc}")
    for name in list(logging.root.manager.loggerDict):  # the ranks speak for themselves
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    added = rank_environment(nproc)
    saved = {k: os.environ.get(k) for k in added}
    os.environ.update(added)  # (the ranks inherit this process's environment)
    try:
        elastic_launch(config, sys.executable)("-m", "infinitygan", *strip_nproc(argv))
    except ChildFailedError as e:
        codes = sorted(f.exitcode for f in e.failures.values())
        if any(c in (130, 143) for c in codes):
            return 143 if 143 in codes else 130
        killed = [f"rank {r} (signal {-f.exitcode})" for r, f in sorted(e.failures.items()) if f.exitcode < 0]
        if killed and not any(c > 0 for c in codes):  # (once a rank fails, the launcher ends the others)
            print(f"infinitygan: error: {', '.join(killed)} ended without a word (killed?)", file=sys.stderr)
        return 2
    except SignalException as e:
        return 143 if int(e.sigval) == 15 else 130
    except KeyboardInterrupt:
        return 130
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return 0
