"""The torchrun environment of every command: process group, ranks, devices, collectives, the
set-up error check, and a local launcher.

``torchrun --nproc_per_node N -m infinitygan train|generate ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`setup` then joins the process group (training: gloo on CPU, nccl on CUDA;
synthesis: gloo, its tiles travel through host memory). Without those variables (or with
WORLD_SIZE=1) everything runs in one process and every helper here is a no-op.

:func:`launch_local` runs a function in N local gloo processes (``torch.multiprocessing``
spawn): used by the tests and handy where torchrun is not available.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class DistContext:
    """rank / world_size / local_rank of this process and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False  # True when this module created the process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment (0, 1, 0 without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"bad distributed environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher) with WORLD_SIZE > 1."""
    return env_world()[1] > 1


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` under a launcher when CUDA without an index was
    asked for (made the current CUDA device)."""
    if device.type == "cuda" and device.index is None and launched():
        local = env_world()[2]
        if local >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(device: torch.device, backend: str | None = None) -> DistContext:
    """Join the process group described by the environment; choose this rank's device.

    ``device`` is the requested device kind; on CUDA each rank uses ``cuda:LOCAL_RANK``.
    ``backend``: default gloo on the CPU and nccl on CUDA.
    """
    rank, world, local = env_world()
    device = local_device(device)
    if world == 1:
        return DistContext(0, 1, 0, device, False)
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local, device, False)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                            timeout=timedelta(minutes=30))
    return DistContext(rank, world, local, device, True)


def teardown(ctx: DistContext) -> None:
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_mean(ctx: DistContext, x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a new tensor; ``x`` itself when not distributed)."""
    if not ctx.distributed:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / ctx.world_size


def all_true(ctx: DistContext, flag: bool) -> bool:
    """True iff ``flag`` holds on every process."""
    if not ctx.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def any_true(ctx: DistContext, flag: bool) -> bool:
    """True iff ``flag`` holds on some process."""
    return not all_true(ctx, not flag)


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def check_setup(ctx: DistContext, error: str | None) -> None:
    """Every rank's set-up error (None: fine) gathered: when any rank failed, all stop before
    any work; rank 0 raises UserError with the message (once), the others exit with status 2."""
    bad = [(r, e) for r, e in enumerate(all_gather_objects(ctx, error)) if e]
    if not bad:
        return
    r, e = bad[0]
    if ctx.is_main:
        raise UserError(e if all(x == e for _, x in bad) else f"rank {r}: {e}")
    sys.exit(2)


def rank_slice(ctx: DistContext) -> slice:
    """This rank's share of a global batch: samples rank, rank + W, rank + 2W, ...

    Interleaved (not contiguous) on purpose: ``data.ResumableSampler`` splits the real batches the
    same way, so rank r's real and generated samples of an iteration are the same global
    positions, and the discriminator's strided minibatch-stddev groups of the one-process run are
    exactly the union of the ranks' groups whenever ``mbstd_group`` divides B / W.
    """
    return slice(ctx.rank, None, ctx.world_size)


# --------------------------------------------------------------------------- local launcher
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, kwargs: dict) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    fn(*args, **kwargs)


def launch_local(world_size: int, fn: Callable, *args, **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` in ``world_size`` spawned processes joined as a gloo group.

    ``fn`` must be importable (a module-level function). Raises if any process fails.
    """
    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(_worker, args=(world_size, port, fn, args, kwargs), nprocs=world_size, join=True)
