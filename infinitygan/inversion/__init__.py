"""Inversion, outpainting, inbetweening and panoramas from photos (paper Section 4.3, Appendix K).

    from infinitygan.inversion import Inversion, InversionConfig, load_latents
"""
from .footprint import Footprint, Window, footprint
from .invert import Inversion, InversionConfig, psnr
from .latents_file import Latents, load_latents, model_identity

__all__ = ["Footprint", "Window", "footprint", "Inversion", "InversionConfig", "psnr", "Latents",
           "load_latents", "model_identity"]
