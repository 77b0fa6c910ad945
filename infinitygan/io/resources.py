"""What the machine has, and what a request will need, compared before anything is allocated.

A 117-byte config can declare 8192-wide layers (78 GB of generator weights), a model file of a
few megabytes can carry such a config, a command line can ask for a 16384-pixel tile at batch
1024. Commands estimate the memory first (parameters counted from the config on PyTorch's
"meta" device, which holds shapes and no data; activations from the tile and batch; a PNG's row
buffer from the width) and refuse in one line when the figure exceeds the memory available.

The limit is the memory the system reports available (Linux: MemAvailable plus free swap), or
``INFINITYGAN_MEMORY_MB`` when set (a larger figure lets a command try anyway; a smaller one
keeps it within a share of the machine).
"""
from __future__ import annotations

import os

from ..errors import UserError

ENV = "INFINITYGAN_MEMORY_MB"


class TooLarge(UserError):
    """A request that needs more memory than is available (one line, exit code 2)."""


def size_text(n: float) -> str:
    """Bytes as a short figure (MB below 1 GB, else GB)."""
    return f"{n / 2 ** 30:,.1f} GB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.1f} MB"


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get (``INFINITYGAN_MEMORY_MB`` when set), or None
    when the system does not say."""
    env = os.environ.get(ENV)
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise UserError(f"{ENV} must be a number of MB, got {env!r}") from None
        if not mb > 0:
            raise UserError(f"{ENV} must be a positive number of MB, got {env!r}")
        return int(min(mb, 2.0 ** 50) * 2 ** 20)
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        if "MemAvailable" in info:
            return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(need: int, what: str, hint: str = "") -> None:
    """UserError when ``what`` (e.g. "the generator of this config (19.6 G parameters)") needs
    more than the memory available; ``hint`` says how to ask for less."""
    avail = available_memory()
    if avail is not None and need > avail:
        hint = f"; {hint}" if hint else ""
        raise TooLarge(f"{what} needs about {size_text(need)} of memory, more than the {size_text(avail)} available"
                        f"{hint} ({ENV}=MB sets the limit)")


def parameter_counts(cfg) -> tuple[int, int]:
    """(generator, discriminator) parameter counts of a ``ModelConfig``, from modules built on
    the meta device (shapes only: nothing is allocated, whatever the widths)."""
    import torch

    from ..discriminator import Discriminator
    from ..generator import Generator

    with torch.device("meta"):
        g = Generator(cfg.generator)
        d = Discriminator(cfg.discriminator, cfg.generator.patch_size)
    return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


def count_text(n: int) -> str:
    """A parameter count as a short figure (M or G)."""
    return f"{n / 1e6:,.1f} M" if n < 1e9 else f"{n / 1e9:,.1f} G"


def check_model_memory(cfg, what: str = "the model", generator: float = 1.0, discriminator: float = 0.0) -> None:
    """Refuse a config whose weights do not fit: ``generator`` float32 copies of the generator's
    parameters and ``discriminator`` copies of the discriminator's (training holds G, G_ema, D,
    their gradients and Adam moments)."""
    g, d = parameter_counts(cfg)
    count = f"G {count_text(g)}, D {count_text(d)}" if discriminator else count_text(g)
    check_memory(int(4 * (generator * g + discriminator * d)), f"{what} ({count} parameters)",
                 "narrow its layers (generator: *_dim, gs_channels, ts_channels; discriminator: channels)")
