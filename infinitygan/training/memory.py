"""What a training run will hold in memory, estimated from its config before the run exists.

A config of a few lines can declare 8192-wide layers, and ``--set full_size=8192`` makes every
procedural image a 9 GB render: both used to allocate until the process died, after the run
directory had been written. The estimate, refused against the available memory
(``io.resources``, ``INFINITYGAN_MEMORY_MB`` overrides), is the sum of

* weights: G, G_ema, D, the gradients of G and D and Adam's two moments of each, float32
  (5 copies of G's parameters, 4 of D's), counted on the meta device;
* data: the images loaded at once (one per data-loader worker, else one per loading thread of
  the batch) times their full size squared times the dataset's working bytes per pixel;
* the process itself (torch, the activations of the tiny presets): ``RUNTIME_BYTES``.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..io.resources import check_memory, count_text, parameter_counts

#: working bytes per pixel of loading one full image when the dataset does not say
#: (decoding and preprocessing a photo or an LMDB record: uint8 pixels, a float copy, resizing)
DEFAULT_BYTES_PER_PIXEL = 24
#: a training process's own memory besides weights and images (about 1 GB for the tiny preset)
RUNTIME_BYTES = 2 ** 30


def check_training_memory(cfg: ModelConfig, dataset, workers: int, local_batch: int) -> None:
    """UserError (one line) when the run's weights and data loading need more memory than is
    available."""
    g, d = parameter_counts(cfg)
    weights = 4 * (5 * g + 4 * d)
    at_once = workers if workers > 0 else max(1, min(local_batch, torch.get_num_threads()))
    full = cfg.training.full_size
    data = at_once * full * full * getattr(dataset, "bytes_per_pixel", DEFAULT_BYTES_PER_PIXEL)
    hint = ("narrow its layers (generator: *_dim, gs_channels, ts_channels; discriminator: channels)"
            if weights >= data else "a smaller training.full_size (--set full_size=...)")
    check_memory(weights + data + RUNTIME_BYTES,
                 f"training {cfg.name} (G {count_text(g)}, D {count_text(d)} parameters; {at_once} {full}x{full} "
                 f"image{'s' if at_once > 1 else ''} loaded at once)", hint)
