"""The torchrun environment of every command: process group, ranks, devices, collectives, the
set-up error check, and a local launcher.

``torchrun --nproc_per_node N -m infinitygan train|generate ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`setup` then joins the process group (training: gloo on CPU, nccl on CUDA;
synthesis: gloo, its tiles travel through host memory). Without those variables (or with
WORLD_SIZE=1) everything runs in one process and every helper here is a no-op.

:func:`launch_local` runs a function in N local gloo processes (``torch.multiprocessing``
spawn): used by the tests and handy where torchrun is not available.

Elastic restarts: under ``torchrun --max-restarts K`` a group whose worker died is started again
with TORCHELASTIC_RESTART_COUNT > 0 (:func:`restart_count`) and the same TORCHELASTIC_RUN_ID
(:func:`elastic_run_id`: ``--rdzv-id``, a fresh id under ``--standalone``). A rank whose peer died
sees a collective fail: :func:`is_lost_peer` tells that error apart and :class:`LostPeer` carries
it to the command line as one line.
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import LostPeer, UserError

#: name prefix of the token file of :func:`check_shared_folder`
SHARED_TOKEN = ".infinitygan-shared-"


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


def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this group (0: the first start, or
    no elastic agent)."""
    try:
        return max(0, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def elastic_run_id() -> str | None:
    """The elastic job's id (torchrun's ``--rdzv-id``; a fresh uuid under ``--standalone``;
    "none" when a multi-node launch names none), or None outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or None


#: what gloo / NCCL / the c10d store say when the other end of the group went away
_LOST_PEER_WORDS = ("connection closed by peer", "connection reset by peer", "broken pipe", "gloo/transport",
                    "remote worker crashing", "ncclremoteerror", "nccl communicator was aborted",
                    "connection refused", "socket timeout")


def is_lost_peer(exc: BaseException) -> bool:
    """True for the error a collective raises when another process of the group ended (killed,
    crashed, its node gone): torch's DistError family, or gloo's plain RuntimeError about a
    closed connection."""
    if isinstance(exc, LostPeer):
        return True
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    msg = str(exc).lower()
    return any(w in msg for w in _LOST_PEER_WORDS)


def lost_peer(ctx: "DistContext", exc: BaseException) -> LostPeer:
    """The one-line LostPeer of ``exc`` (a collective's failure) on this rank."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first.split("] ", 1)[-1] if first.startswith("[") else first  # gloo's source location
    first = first.split(". This is typically", 1)[0]
    return LostPeer(f"rank {ctx.rank}: another process of the group ended ({first}); "
                    "torchrun restarts the group if --max-restarts allows")


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
    timeout = timedelta(minutes=30)
    if restart_count() > 0:
        # torchrun's agent serves one store for all restarts of a job: keys of our own per
        # restart, or the restarted group reads the dead group's addresses (gloo: "connection
        # refused" to a rank that no longer exists)
        base, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
        store = dist.PrefixStore(f"infinitygan/restart-{restart_count()}", base)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world, timeout=timeout)
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


def where() -> str:
    """This process as a message names it: "rank R on HOST (node N)" (N: torchrun's GROUP_RANK)."""
    rank = env_world()[0]
    node = os.environ.get("GROUP_RANK")
    return f"rank {rank} on {socket.gethostname()}" + (f" (node {node})" if node is not None else "")


def check_setup(ctx: DistContext, error: str | None) -> None:
    """Every rank's set-up error (None: fine) gathered: when any rank failed, all stop before
    any work; rank 0 raises UserError with the message (once), the others exit with status 2.

    The message names the rank, its host and its node unless every rank failed alike (or only
    rank 0 did, which reports itself): on a cluster the node that cannot see a file is the news.
    """
    gathered = all_gather_objects(ctx, (error, where()))
    bad = [(w, e) for e, w in gathered if e]
    if not bad:
        return
    w, e = bad[0]
    only_rank0 = len(bad) == 1 and gathered[0][0] is not None
    alike = only_rank0 or (len(bad) == ctx.world_size and all(x == e for _, x in bad))
    if ctx.is_main:
        raise UserError(e if alike else f"{w}: {e}")
    sys.exit(2)


def check_shared_folder(ctx: DistContext, folder: str | Path, what: str) -> None:
    """UserError (reported by rank 0, naming the node) unless every rank sees the files rank 0
    writes in ``folder``: rank 0 creates the folder and writes a token file in it, every other
    rank reads it back after a barrier. Run and output folders of a multi-node job must be on a
    file system that every node mounts at the same path."""
    if not ctx.distributed:
        return
    folder = Path(folder)
    token, error = None, None
    if ctx.is_main:
        token = secrets.token_hex(8)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{SHARED_TOKEN}{token}").write_text(token)
        except OSError as e:
            token, error = None, f"cannot write in {what} {folder}: {e.strerror or e}"
    token = all_gather_objects(ctx, token)[0]  # a barrier too: the file is written
    try:
        if token is not None and not ctx.is_main:
            try:
                seen = (folder / f"{SHARED_TOKEN}{token}").read_text() == token
            except OSError:
                seen = False
            if not seen:
                error = (f"{what} {folder} is not shared with rank 0: this node cannot see the file rank 0 "
                         "wrote there (it must be on a file system every node mounts at the same path)")
        check_setup(ctx, error)
    finally:
        if token is not None and ctx.is_main:
            (folder / f"{SHARED_TOKEN}{token}").unlink(missing_ok=True)


def check_same(ctx: DistContext, what: str, value: Any) -> None:
    """UserError (reported by rank 0, naming the node) unless ``value`` (what this rank sees of
    ``what``, e.g. the number of images of the data) is rank 0's on every rank."""
    first = all_gather_objects(ctx, value)[0]
    check_setup(ctx, None if value == first else f"{what} differs from rank 0's ({value!r} here, {first!r} "
                                                  "there): every node must see the same files")


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
