"""The Python API.

    import infinitygan as ig
    model = ig.init_model("tiny", seed=0)            # or ig.load_model("model.safetensors")
    img = model.generate(seed=3, width=2048, height=256)   # float32 (H, W, 3), about [-1, 1]
    ig.save_image("pano.png", img)
    model.generate_to_file("huge.tif", seed=3, width=100_000, height=1024)   # streamed
    model.generate_to_file("huge.tif", 3, 100_000, 1024, tile=512, device="cuda")   # RenderOptions fields
    img = model.generate(3, 512, 256, options=ig.RenderOptions(dtype="bfloat16"))    # or a RenderOptions

Regions are pixel rectangles of the infinite image of a seed: ``x``/``y`` may be any integers
(default: centred horizontally on 0 and vertically on the horizon).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, load_config
from .errors import UserError, check_int
from .generator import Generator
from .io.checkpoint import save_model_file
from .latents import Canvas
from .render.options import DTYPES, RenderOptions, resolve_device, resolve_dtype
from .synthesis import Region, Synthesizer, centered_origin

__all__ = ["DTYPES", "Model", "RenderOptions", "build_generator", "init_model", "load_model", "resolve_device",
           "resolve_dtype"]

def build_generator(cfg: ModelConfig) -> torch.nn.Module:
    """A freshly initialised generator for a config."""
    return Generator(cfg.generator)


@dataclass(repr=False)
class Model:
    """A generator with its config (what a model file holds)."""

    generator: Generator
    config: ModelConfig

    def __repr__(self) -> str:
        g = self.config.generator
        n = sum(p.numel() for p in self.generator.parameters())
        return (f"Model({self.config.name!r}, {g.arch}, {n:,} parameters, zg {g.zg_dim}, zl {g.zl_dim}, "
                f"patch {g.patch_size})")

    def save(self, path: str | Path) -> Path:
        return save_model_file(path, self.generator.state_dict(), self.config)

    def synthesizer(self, device=None, dtype="float32", max_memory_mb: float | None = None) -> Synthesizer:
        return RenderOptions(device=device or "auto", dtype=dtype, max_memory_mb=max_memory_mb).synthesizer(self)

    def canvas(self, seed: int) -> Canvas:
        g = self.config.generator
        return Canvas(check_int("seed", seed), g.zg_dim, g.zl_dim)

    def region(self, width: int, height: int, x: int | None = None, y: int | None = None) -> Region:
        """The region (x, y, width, height); x / y default to centred on 0 and on the horizon."""
        width, height = check_int("width", width, 1), check_int("height", height, 1)
        cx, cy = centered_origin(width, height, 2 ** self.config.generator.n_up)
        x = cx if x is None else check_int("x", x)
        y = cy if y is None else check_int("y", y)
        return Region(x, y, width, height)

    def generate(self, seed: int, width: int, height: int, x: int | None = None, y: int | None = None,
                 options: RenderOptions | None = None, **settings) -> np.ndarray:
        """Region (x, y, width, height) of image ``seed`` as float32 (height, width, 3).

        ``options`` / ``settings``: a ``RenderOptions`` and/or its fields as keywords (tile, batch,
        device, dtype, max_memory_mb, progress), as for ``generate_to_file``.
        """
        from .render.pipeline import render_array
        from .render.sources import SeedSource

        options = RenderOptions.of(options, **settings)
        return render_array(self, SeedSource(seed), self.region(width, height, x, y), options)

    def generate_to_file(self, path: str | Path, seed: int, width: int, height: int, x: int | None = None,
                         y: int | None = None, options: RenderOptions | None = None, **settings) -> Path:
        """Stream the region to an image file (.png, .jpg, .tif, .npy) in bounded memory.

        ``options`` / ``settings``: a ``RenderOptions`` and/or its fields as keywords (tile,
        batch, device, dtype, max_memory_mb, progress, force). Everything that can be refused
        is refused before synthesis: the path, JPEG above its in-memory limit, an uncompressed
        size beyond the folder's free space (``force`` overrides that for .png / .tif). Memory
        is bounded by a tile (a short row of tiles for PNG, see ``io.images``), whatever the
        width. In a torch.distributed group, call it on every rank: they share the tiles.
        """
        from .render.pipeline import render_to_file
        from .render.sources import SeedSource

        return render_to_file(self, path, SeedSource(seed), self.region(width, height, x, y),
                              RenderOptions.of(options, **settings))


def init_model(preset: str = "tiny", seed: int = 0) -> Model:
    """A model of a preset (or YAML path) with random weights drawn from ``seed``."""
    seed = check_int("seed", seed, 0)
    if seed >= 2 ** 63:
        raise UserError(f"the weights' seed must be below 2^63, got {seed}")
    cfg = load_config(preset)
    from .io.resources import check_model_memory

    check_model_memory(cfg, f"the generator of {cfg.name}", generator=2)  # its weights, and their copy on saving
    torch.manual_seed(seed)
    return Model(build_generator(cfg).eval(), cfg)


def load_model(path: str | Path | None = None) -> Model:
    """Load a model file, a training checkpoint or run directory (newest readable G_ema), or the
    bundled model (None). Refuses (UserError) files whose weights are not all finite or do not
    match their config."""
    from .io.runs import generator_state, load_model_or_run

    if path is None:
        from .bundled import bundled_model_path

        path = bundled_model_path()
    path, state, cfg, meta = load_model_or_run(path)
    return Model(checked_generator(path, generator_state(state, meta), cfg).eval(), cfg)


def checked_generator(path, state: dict[str, torch.Tensor], cfg: ModelConfig) -> Generator:
    """A generator of ``cfg`` holding ``state``; UserError when a tensor is missing, unexpected,
    of another shape, or not finite (``load_model`` and ``info`` refuse the same files)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                        "the model is unusable")
    with torch.device("meta"):  # shapes only: a small file's config may declare layers of gigabytes
        own = build_generator(cfg).state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        what = [f"{name} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for name, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
                if keys]
        raise UserError(f"{path}: model tensors do not match its config ({'; '.join(what)})")
    from .io.resources import check_model_memory

    check_model_memory(cfg, f"the generator of {path}")
    gen = build_generator(cfg)
    gen.load_state_dict(state)
    return gen
