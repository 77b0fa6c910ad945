"""How a run is executed (device, precision, loaders, intervals, output): options that never change
the trajectory of the weights, validated once. The trajectory itself is the ModelConfig (with its
batch size and iteration count), the seed and the data."""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

import torch

from ..errors import UserError


#: most data-loader processes per training process (each is a process with its own memory)
MAX_WORKERS = 64


@dataclass(frozen=True)
class RunOptions:
    """device: auto, cpu, cuda, ...; amp: "none" or "bf16" (autocast); workers: data-loader
    processes per training process (0: in-process; None: ``default_workers`` of the device);
    tf32: TensorFloat-32 matmuls and convolutions on CUDA (ignored elsewhere; PyTorch's default
    already runs cuDNN convolutions in TF32, not matmuls); checkpoint/sample/log intervals in iterations
    (None: the config's); deterministic: ``torch.use_deterministic_algorithms``; quiet: no progress
    bar; samples: write sample grids; max_nonfinite: consecutive iterations with a skipped step
    before the run stops; keep: checkpoints kept; keep_every: checkpoints at a multiple of it are
    kept besides (never rotated out: the points of a learning curve); checkpoint_activations: G and D keep only the
    inputs of their layers and blocks for the backward and recompute the rest (``nn.checkpointing``:
    the same gradients, R1 and path length included, for less memory and more time)."""

    device: str = "auto"
    amp: str = "none"
    workers: int | None = None
    tf32: bool = False
    checkpoint_every: int | None = None
    sample_every: int | None = None
    log_every: int | None = None
    deterministic: bool = False
    quiet: bool = False
    samples: bool = True
    max_nonfinite: int = 20
    keep: int = 3
    keep_every: int | None = None
    #: on the CPU, tune glibc's malloc for the run (``keep_freed_memory``). Process-wide and not
    #: undoable (glibc has no call that reads the previous setting back), so only a process that
    #: ends with the run sets it: the ``train`` command does; a ``train()`` call in a notebook or a
    #: test leaves the allocator as it was unless it opts in
    keep_freed_memory: bool = False
    checkpoint_activations: bool = False

    def __post_init__(self):
        if self.amp not in ("none", "bf16"):
            raise UserError(f"unknown --amp {self.amp!r} (none, bf16)")
        if self.workers is not None and not 0 <= self.workers <= MAX_WORKERS:
            raise UserError(f"--workers must be in 0..{MAX_WORKERS} (data-loader processes per training process), "
                            f"got {self.workers}")
        for name in ("checkpoint_every", "sample_every", "log_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.keep_every is not None and self.keep_every < 1:
            raise UserError(f"--keep-every must be >= 1, got {self.keep_every}")
        if self.max_nonfinite < 1 or self.keep < 1:
            raise UserError("max_nonfinite and keep must be >= 1")

    @property
    def autocast(self) -> str | None:
        return None if self.amp == "none" else self.amp


def default_workers(device: torch.device) -> int:
    """Data-loader processes when --workers is not given: 2 on accelerators (the CPU is free to
    load), 0 on the CPU, where every core is better spent on the intra-op threads of training:
    on 2 cores, 2 threads with the data loaded in-process ran 1.6x faster than the former
    default (2 workers, hence 1 thread), and a worker beside 2 threads gained nothing
    (docs/benchmarks.md, "Training speed")."""
    return 0 if device.type == "cpu" else 2


def cpu_threads(workers: int, local_processes: int) -> int:
    """Intra-op threads of a CPU training process.

    OMP_NUM_THREADS, when the user set it, wins. Otherwise the cores this process may use are
    shared by the local training processes and their data-loader workers: max(1, cores // local
    processes - workers) (also under ``--nproc``, whose launcher sets OMP_NUM_THREADS to the
    ranks' share without the workers: ``parallel.launch.rank_environment``). Oversubscribed
    OpenMP threads spin on their barriers, which made a 2-core machine 5-20x slower in our
    measurements, while the (procedural or decoded) data costs little.
    """
    from ..parallel.launch import THREADS_FROM_NPROC, available_cores

    if os.environ.get("OMP_NUM_THREADS") and not os.environ.get(THREADS_FROM_NPROC):
        return torch.get_num_threads()
    cores = available_cores()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", local_processes))
    return max(1, cores // max(local, 1) - int(workers))


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for a CPU training process (Linux; elsewhere a no-op): tensors up to
    32 MiB come from the heap instead of fresh ``mmap`` regions, and freed memory stays mapped
    for reuse instead of going back to the kernel.

    Every iteration frees and reallocates the same activations; by default each large one was a
    new mapping whose pages fault on first touch (about 40,000 page faults and a fifth of the
    time of the G phase at ``tiny``, batch 8, on 2 cores: docs/benchmarks.md). With this the heap
    grows to the iteration's peak once and is reused. The cost: memory freed after the peak stays
    reserved by the process until it exits, and nothing sets the previous behaviour back, so
    only the ``train`` command's process, which ends with the run, calls this
    (``RunOptions.keep_freed_memory``). Idempotent; True when glibc took the settings.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = (mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1  # glibc's maximum (HEAP_MAX_SIZE / 2)
          and mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
          and mallopt(M_TOP_PAD, 64 << 20) == 1)
    _ALLOCATOR_TUNED = ok
    return ok
