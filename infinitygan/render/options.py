"""RenderOptions: how a region is rendered and written (tile, batch, device, dtype, memory
budget, progress, force), built and checked once, then handed to every runner unchanged.

Importing this module and checking options import no torch (the ONNX runtime builds its options
here too); torch comes in where it is needed: a CUDA or MPS device is checked for availability,
``torch_device`` / ``torch_dtype`` / ``synthesizer`` resolve the names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from ..errors import UserError, check_int

if TYPE_CHECKING:
    import torch

#: the compute dtypes, by name (``DTYPES``: name -> torch.dtype, built on first use)
DTYPE_NAMES = ("float32", "bfloat16", "float16")
#: largest tile side (pixels) a request may ask for: far above any memory budget's choice
MAX_TILE = 16384
#: most tiles per forward pass
MAX_BATCH = 1024
#: largest working-memory budget (MB): 1 PiB, i.e. "no limit" without overflowing any estimate
MAX_MEMORY_MB = float(2 ** 30)


def _torch_dtypes() -> dict:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def __getattr__(name: str):
    if name == "DTYPES":
        return _torch_dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A torch.device from "auto" (CUDA, else MPS, else CPU), "cpu", "cuda", "cuda:N" or "mps";
    UserError when unknown or unavailable."""
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device {device!r} (cpu, cuda, cuda:N, mps, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"{dev} was requested but there are {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("MPS was requested but is not available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unsupported device {device!r} (cpu, cuda, cuda:N, mps, auto)")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    _check_dtype(dtype)
    dtypes = _torch_dtypes()
    if not isinstance(dtype, str):
        if dtype not in dtypes.values():
            raise UserError(f"unsupported dtype {dtype} (choose from: {', '.join(DTYPE_NAMES)})")
        return dtype
    return dtypes[dtype]


def _check_dtype(dtype) -> None:
    """UserError for a dtype name that is not one of DTYPE_NAMES (no torch for a name)."""
    if isinstance(dtype, str) and dtype not in DTYPE_NAMES:
        raise UserError(f"unknown dtype {dtype!r} (choose from: {', '.join(DTYPE_NAMES)})")
    if not isinstance(dtype, str):
        import torch

        if not isinstance(dtype, torch.dtype):
            raise UserError(f"unknown dtype {dtype!r} (choose from: {', '.join(DTYPE_NAMES)})")


def dtype_name(dtype: str | torch.dtype) -> str:
    """The name (one of DTYPE_NAMES) of a dtype given by name or as a torch.dtype."""
    _check_dtype(dtype)
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class RenderOptions:
    """How to render and write a region. Checked on construction (UserError, one line):

    tile: tile side in pixels (rounded to the model's lattice; default: the largest that fits
      the memory budget). batch: tiles per forward pass. device: "auto", "cpu", "cuda[:N]",
      "mps" (or a torch.device). dtype: "float32", "bfloat16", "float16". max_memory_mb: the
      working-memory budget that picks the default tile (default: 256 MB on CPU, a quarter of
      the GPU). progress: a progress bar. force: write even when the uncompressed output
      exceeds the free disk space (.png / .tif / .zarr). resume: continue the partial output a
      killed render of the same image left (.npy and .zarr: ``io.resumable``).
    """

    tile: int | None = None
    batch: int | None = None
    device: str | torch.device = "auto"
    dtype: str | torch.dtype = "float32"
    max_memory_mb: float | None = None
    progress: bool = False
    force: bool = False
    resume: bool = False

    def __post_init__(self):
        if self.tile is not None:
            tile = check_int("--tile", self.tile, 1)
            if tile > MAX_TILE:
                raise UserError(f"--tile must be at most {MAX_TILE:,} pixels, got {tile:,}")
            object.__setattr__(self, "tile", tile)
        if self.batch is not None:
            batch = check_int("--batch", self.batch, 1)
            if batch > MAX_BATCH:
                raise UserError(f"--batch must be at most {MAX_BATCH:,} tiles, got {batch:,}")
            object.__setattr__(self, "batch", batch)
        if self.max_memory_mb is not None:
            try:
                mb = float(self.max_memory_mb)
            except (TypeError, ValueError):
                raise UserError(f"--max-memory must be a number of MB, got {self.max_memory_mb!r}") from None
            if not (math.isfinite(mb) and 0 < mb <= MAX_MEMORY_MB):
                raise UserError(f"--max-memory must be a positive finite number of MB (at most {MAX_MEMORY_MB:.0f}), "
                                f"got {self.max_memory_mb}")
            object.__setattr__(self, "max_memory_mb", mb)
        if isinstance(self.dtype, str):
            _check_dtype(self.dtype)
        else:
            resolve_dtype(self.dtype)
        if not (isinstance(self.device, str) and self.device in ("auto", "cpu")):
            resolve_device(self.device)  # a named accelerator: is it there? (imports torch)
        object.__setattr__(self, "progress", bool(self.progress))
        object.__setattr__(self, "force", bool(self.force))
        object.__setattr__(self, "resume", bool(self.resume))

    @classmethod
    def of(cls, options: "RenderOptions | None" = None, **settings) -> "RenderOptions":
        """``options`` with ``settings`` (RenderOptions fields, None = keep) applied."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(settings) - names)
        if bad:
            raise TypeError(f"unknown render setting(s): {', '.join(bad)}")
        base = options if options is not None else cls()
        return replace(base, **{k: v for k, v in settings.items() if v is not None})

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return resolve_dtype(self.dtype)

    def synthesizer(self, model, device: torch.device | None = None):
        """A ``Synthesizer`` of ``model`` (a Model or a Generator) with these settings."""
        from ..synthesis import Synthesizer

        gen = getattr(model, "generator", model)
        return Synthesizer(gen, device if device is not None else self.torch_device, self.torch_dtype,
                           self.max_memory_mb)
