"""One render pipeline for every command that writes a region of a canvas to a file.

    canvas source (seed, scene, inverted latents, ...)  ->  RenderOptions (validated once)
        ->  one writer: this process, or the ranks of a torchrun group that agree on rank 0's plan

``generate`` (plain, ``--style`` / ``--scene``, ``--latents``), ``outpaint`` and ``inbetween``
all go through ``pipeline.run``; under torchrun every source is split among the ranks like a
plain seed, byte-identical to one process.
"""
from .options import RenderOptions, resolve_device, resolve_dtype
from .pipeline import Job, render_to_file, require_tileable, run, write_region
from .sources import CanvasSource, SeedSource

__all__ = ["CanvasSource", "Job", "RenderOptions", "SeedSource", "render_to_file", "require_tileable", "resolve_device",
           "resolve_dtype", "run", "write_region"]
