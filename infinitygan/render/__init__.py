"""One render pipeline for every command that writes a region of a canvas to a file.

    canvas source (seed, scene, inverted latents, ...)  ->  RenderOptions (validated once)
        ->  one writer: this process, or the ranks of a torchrun group that agree on rank 0's plan

``generate`` (plain, ``--style`` / ``--scene``, ``--latents``), ``outpaint`` and ``inbetween``
all go through ``pipeline.run``; under torchrun every source is split among the ranks like a
plain seed, byte-identical to one process.
"""
from ..lazy import exports as _exports

_EXPORTS = {"RenderOptions": "options", "resolve_device": "options", "resolve_dtype": "options", "Job": "pipeline",
            "render_array": "pipeline", "render_to_file": "pipeline", "require_tileable": "pipeline", "run": "pipeline",
            "write_region": "pipeline", "CanvasSource": "sources", "SeedSource": "sources"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
