"""Resumable loading: an endless stream of shuffled passes, split over processes, that starts at
any iteration without replaying the ones before.

Shapes / dtypes:
    endless_batches(PatchDataset, B)   -> batches (float32 (b, 3, p, p), float32 (b,)), b = B / W
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from .patches import PatchDataset
from .seeds import seeded_generator

__all__ = ["ResumableSampler", "endless_batches"]


def _pass_permutation(seed: int, n: int, pass_index: int) -> list[int]:
    return torch.randperm(n, generator=seeded_generator(seed, pass_index, 0x5A4D)).tolist()


class ResumableSampler(Sampler):
    """This process's share of an endless stream of shuffled passes over ``n`` items, from any
    iteration on.

    The stream: pass q = 0, 1, ... is a permutation of the n items seeded by (seed, q); the passes
    are concatenated and cut into global batches of B items (batch t = stream positions
    [t B, (t + 1) B)). Process r of W takes positions t B + r, t B + r + W, ... (b = B / W of them,
    the interleaving of ``distributed.rank_slice``). Keys are ``(q, index)`` (``PatchDataset``
    draws the crop from (seed, q, index)). Starting at iteration t is arithmetic (position t B):
    nothing is replayed. A dataset smaller than a batch repeats inside the batch (few-shot).
    """

    def __init__(self, n: int, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_iteration: int = 0):
        if n < 1 or global_batch < 1 or global_batch % world_size or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler: n={n}, batch={global_batch}, rank={rank}, world={world_size}")
        self.n, self.batch, self.seed = int(n), int(global_batch), int(seed)
        self.rank, self.world = int(rank), int(world_size)
        self.start = int(start_iteration)

    def passes_done(self, iteration: int) -> int:
        """Whole passes over the data consumed by ``iteration`` iterations."""
        return iteration * self.batch // self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        q, off = divmod(self.start * self.batch, self.n)
        perm = _pass_permutation(self.seed, self.n, q)
        while True:
            for j in range(self.batch):
                if j % self.world == self.rank:
                    yield q, perm[off]
                off += 1
                if off == self.n:
                    q, off = q + 1, 0
                    perm = _pass_permutation(self.seed, self.n, q)


def _ignore_sigint(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the training process (which checkpoints, then stops them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def endless_batches(patches: "PatchDataset", global_batch: int, workers: int, rank: int = 0, world_size: int = 1,
                    seed: int = 0, start_iteration: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (patches (b, 3, p, p), labels (b,)) of iterations start_iteration, +1, ... for process
    ``rank`` (b = global_batch / world_size), loaded by ``workers`` processes (0: in-process)."""
    sampler = ResumableSampler(len(patches), global_batch, seed, rank, world_size, start_iteration)
    loader = DataLoader(patches, batch_size=global_batch // world_size, sampler=sampler, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), worker_init_fn=_ignore_sigint if workers else None)
    return iter(loader)
