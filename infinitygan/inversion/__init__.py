"""Inversion, outpainting, inbetweening and panoramas from photos (paper Section 4.3, Appendix K).

    from infinitygan.inversion import Inversion, InversionConfig, load_latents
"""
from ..lazy import exports as _exports
from .footprint import Footprint, Window, footprint  # light; and `footprint` is also a submodule's name

_EXPORTS = {"Inversion": "invert",
            "InversionConfig": "config", "psnr": "invert", "Latents": "latents_file", "load_latents": "latents_file",
            "model_identity": "latents_file"}
__all__ = sorted(_EXPORTS) + ["Footprint", "Window", "footprint"]
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
