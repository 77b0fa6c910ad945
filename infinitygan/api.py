"""The Python API.

    import infinitygan as ig
    model = ig.init_model("tiny", seed=0)            # or ig.load_model("model.safetensors")
    img = model.generate(seed=3, width=2048, height=256)   # float32 (H, W, 3), about [-1, 1]
    ig.save_image("pano.png", img)
    model.generate_to_file("huge.tif", seed=3, width=100_000, height=1024)   # streamed

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
from .io.images import check_output, png_tile_height, write_tiles
from .latents import Canvas
from .synthesis import Region, Synthesizer, centered_origin

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("MPS was requested but is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r} (choose from: {', '.join(DTYPES)})")
    return DTYPES[dtype]


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
        return Synthesizer(self.generator, resolve_device(device), resolve_dtype(dtype), max_memory_mb)

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
                 tile: int | None = None, batch: int | None = None, device=None, dtype="float32",
                 progress: bool = False) -> np.ndarray:
        """Region (x, y, width, height) of image ``seed`` as float32 (height, width, 3)."""
        canvas, region = self.canvas(seed), self.region(width, height, x, y)
        return self.synthesizer(device, dtype).render(canvas, region, tile, batch, progress)

    def generate_to_file(self, path: str | Path, seed: int, width: int, height: int, x: int | None = None,
                         y: int | None = None, tile: int | None = None, batch: int | None = None, device=None,
                         dtype="float32", progress: bool = False, force: bool = False,
                         max_memory_mb: float | None = None) -> Path:
        """Stream the region to an image file (.png, .jpg, .tif, .npy) in bounded memory.

        Everything that can be refused is refused before synthesis: the path, JPEG above its
        in-memory limit, an uncompressed size beyond the folder's free space (``force``
        overrides that for .png / .tif). Memory is bounded by a tile (a short row of tiles for
        PNG, see ``io.images``), whatever the width.
        """
        canvas, region = self.canvas(seed), self.region(width, height, x, y)
        path = check_output(path, region.width, region.height, force)
        synth = self.synthesizer(device, dtype, max_memory_mb)
        return render_to_file(path, synth, canvas, region, tile, batch, progress, force)


def render_to_file(path: str | Path, synth: Synthesizer, canvas: Canvas, region: Region, tile: int | None = None,
                   batch: int | None = None, progress: bool = False, force: bool = False,
                   styles: torch.Tensor | None = None, post=None) -> Path:
    """Stream a region of a canvas to an image file through the engine's tiles (atomic).

    PNG gets short rows of tiles (``png_tile_height``); ``styles``: a W+ override; ``post``:
    an optional function over the (tile, pixels) iterator (e.g. pasting known pixels back).
    """
    path = check_output(path, region.width, region.height, force)
    th = png_tile_height(region.width, synth.unit) if path.suffix.lower() == ".png" else None
    plan = synth.plan(region, tile, tile_height=th, batch=batch)
    tiles = synth.tiles(canvas, region, batch=batch, progress=progress, plan=plan, styles=styles)
    if post is not None:
        tiles = post(tiles)
    pieces = ((t.y0 - region.y, t.x0 - region.x, px) for t, px in tiles)
    return write_tiles(path, region.width, region.height, plan.tile_height, plan.tile_width, pieces, force)


def init_model(preset: str = "tiny", seed: int = 0) -> Model:
    """A model of a preset (or YAML path) with random weights drawn from ``seed``."""
    cfg = load_config(preset)
    torch.manual_seed(check_int("seed", seed))
    return Model(build_generator(cfg).eval(), cfg)


def load_model(path: str | Path | None = None) -> Model:
    """Load a model file, a training checkpoint or run directory (newest readable G_ema), or the
    bundled model (None). Refuses (UserError) files whose weights are not all finite."""
    from .io.runs import generator_state, load_model_or_run

    if path is None:
        from .bundled import bundled_model_path

        path = bundled_model_path()
    path, state, cfg, meta = load_model_or_run(path)
    state = generator_state(state, meta)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                        "the model is unusable")
    gen = build_generator(cfg)
    missing, unexpected = _load_state(gen, state)
    if missing or unexpected:
        raise UserError(f"{path}: model tensors do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return Model(gen.eval(), cfg)


def _load_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        return missing, unexpected
    for k, v in state.items():
        if own[k].shape != v.shape:
            return [k], []
    module.load_state_dict(state)
    return [], []
