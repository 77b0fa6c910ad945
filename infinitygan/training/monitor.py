"""What a run shows while it trains: TensorBoard scalars and the sample grids of G_ema."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig

#: canvas seeds of the sample grids (fixed latents: the same images every time)
SAMPLE_SEEDS = (0, 1, 2, 3)
#: fov multiplier of the wide row of the sample grids
SAMPLE_FOV = 4
#: statistics shown on the progress bar
POSTFIX = ("loss/d_total", "loss/g_total", "reg/r1", "reg/path_length", "loss/diversity")


class RunLog:
    """TensorBoard scalars (rank 0; a warning and nothing else if tensorboard is missing)."""

    _warned = False

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # ImportError, or a broken tensorboard install
            if not RunLog._warned:
                warnings.warn("tensorboard is not installed: no training logs "
                              "(pip install tensorboard)", stacklevel=2)
                RunLog._warned = True
            return
        self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def render_sample_grid(g_ema: nn.Module, cfg: ModelConfig, device: torch.device,
                       seeds=SAMPLE_SEEDS, fov: int = SAMPLE_FOV, gap: int = 4) -> np.ndarray:
    """Float (H, W, 3) grid: for each seed a column of cells fov*P wide; top row the training
    field of view (P x P, centred above), bottom row fov x the field of view (fov*P x P) of the
    same canvas and place (the top patch equals the centre of the strip below)."""
    from ..latents import Canvas
    from ..synthesis import Region, Synthesizer, horizon_centered_y

    P = cfg.generator.patch_size
    W = fov * P
    synth = Synthesizer(g_ema, device)
    y = horizon_centered_y(P)
    grid = np.full((2 * P + gap, len(seeds) * (W + gap) - gap, 3), 1.0, np.float32)
    for i, s in enumerate(seeds):
        canvas = Canvas(int(s), cfg.generator.zg_dim, cfg.generator.zl_dim)
        x0 = i * (W + gap)
        px = -(P // 2)
        patch = synth.render(canvas, Region(px, y, P, P))
        strip = synth.render(canvas, Region(-(W // 2), y, W, P))
        off = px + W // 2
        grid[:P, x0 + off: x0 + off + P] = patch
        grid[P + gap:, x0: x0 + W] = strip
    return grid
