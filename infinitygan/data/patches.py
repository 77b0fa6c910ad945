"""Random training patches of full images and their vertical-position labels.

Training samples random ``patch`` x ``patch`` crops (101 of 197) with a random horizontal flip;
the discriminator's auxiliary target is the crop's vertical position ``row / (F - patch) * 2 - 1``
in [-1, 1].

Shapes / dtypes:
    random_patch(img (3, F, F), p, g)  -> (float32 (3, p, p), float label in [-1, 1])
    PatchDataset[(q, i)]               -> (float32 (3, p, p), float32 0-d label)
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import Dataset

from .seeds import seeded_generator

__all__ = ["random_patch", "PatchDataset"]


def random_patch(img: torch.Tensor, patch: int, generator: torch.Generator, flip: bool = True
                 ) -> tuple[torch.Tensor, float]:
    """Random (flipped) ``patch`` x ``patch`` crop of ``img`` (3, H, W) + its vertical label.

    Random draws, in order: flip (p=0.5, only if ``flip``), row offset, column offset.
    Label = ``row / (H - patch) * 2 - 1`` in [-1, 1] (0 when H == patch); the flip does
    not change it.  For H = 197, patch = 101: ``row / 96 * 2 - 1``.
    """
    h, w = img.shape[-2:]
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} larger than image {h}x{w}")
    do_flip = flip and bool(torch.rand((), generator=generator) < 0.5)
    row = int(torch.randint(0, h - patch + 1, (), generator=generator))
    col = int(torch.randint(0, w - patch + 1, (), generator=generator))
    if do_flip:
        col_src = w - patch - col  # crop of the flipped image == flipped crop at mirrored column
        out = img[..., row:row + patch, col_src:col_src + patch].flip(-1)
    else:
        out = img[..., row:row + patch, col:col + patch]
    label = row / (h - patch) * 2.0 - 1.0 if h > patch else 0.0
    return out.contiguous(), float(label)


class PatchDataset(Dataset):
    """Wraps a full-image dataset; item ``(q, i)`` -> (patch (3, p, p) float32, label 0-d float32).

    The crop of image ``i`` in pass ``q`` over the data comes from a generator seeded by
    ``(seed, q, i)``: it does not depend on worker count, order or resumption.
    """

    def __init__(self, dataset: Dataset, patch: int = 101, seed: int = 0, flip: bool = True):
        self.dataset = dataset
        self.patch = int(patch)
        self.seed = int(seed)
        self.flip = bool(flip)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        pass_index, index = int(key[0]), int(key[1])
        g = seeded_generator(self.seed, pass_index, index)
        patch, label = random_patch(self.dataset[index], self.patch, g, flip=self.flip)
        return patch, torch.tensor(label, dtype=torch.float32)

    def __getitems__(self, keys: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The items of one batch (the DataLoader's batched fetch). In the training process
        itself (``--workers 0``, the CPU default) they load on one thread per intra-op thread:
        decoding, resizing and the procedural renderer release the GIL, so the loading uses every
        core instead of one while the others wait. In a loader worker: one by one. Every item is
        a function of its key alone, so the batch is the same either way."""
        n = min(len(keys), _loading_threads())
        if n <= 1:
            return [self[k] for k in keys]
        return list(_thread_pool(n).map(self.__getitem__, keys))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _loading_threads() -> int:
    from torch.utils.data import get_worker_info

    return 1 if get_worker_info() is not None else torch.get_num_threads()


def _thread_pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` loading threads of this process (a forked child makes its own)."""
    key = (os.getpid(), n)
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="infinitygan-load")
    return pool
