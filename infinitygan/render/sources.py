"""Canvas sources: what a render pipeline renders. A source turns a synthesizer into the canvas
of every random input (``canvas``), may override GT's W+ styles (``styles``) and may post-process
each finished tile (``post``, e.g. pasting known pixels back). Rooms add their own sources
(``scene.SceneSource``, ``inversion.LatentsSource``); the pipeline needs nothing else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from ..errors import check_int
from ..latents import Canvas
from ..synthesis import Synthesizer
from ..tiling import Region, Tile

#: a per-tile step over the engine's (tile, float32 pixels) iterator
PostProcess = Callable[[Iterator[tuple[Tile, np.ndarray]]], Iterator[tuple[Tile, np.ndarray]]]


class CanvasSource(Protocol):
    def canvas(self, synth: Synthesizer) -> Canvas:
        """The canvas to render with this synthesizer (its generator, device and dtype)."""

    def styles(self) -> torch.Tensor | None:
        """A W+ override (1, n_styles, style_dim) of mapping(zg) for GT, or None."""

    def post(self, region: Region) -> PostProcess | None:
        """A per-tile step for ``region`` (pure per tile: it runs on the rank that rendered it)."""


@dataclass(frozen=True)
class SeedSource:
    """The plain canvas of an image seed (any integer)."""

    seed: int

    def __post_init__(self):
        object.__setattr__(self, "seed", check_int("seed", self.seed))

    def canvas(self, synth: Synthesizer) -> Canvas:
        return Canvas(self.seed, synth.cfg.zg_dim, synth.cfg.zl_dim)

    def styles(self) -> None:
        return None

    def post(self, region: Region) -> None:
        return None
