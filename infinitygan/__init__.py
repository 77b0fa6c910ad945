"""InfinityGAN (Lin et al., ICLR 2022): infinite-pixel image synthesis in PyTorch.

Quick start::

    import infinitygan as ig
    model = ig.load_model()                       # bundled model (or a path / run directory)
    img = model.generate(seed=3, width=2048, height=256)
    ig.save_image("pano.png", img)
"""
from .api import Model, build_generator, init_model, load_model, resolve_device, resolve_dtype
from .config import ModelConfig, list_presets, load_config
from .errors import UserError
from .io.images import save_image
from .latents import Canvas
from .render import RenderOptions
from .synthesis import Region, Synthesizer

__version__ = "0.1.0"

__all__ = [
    "Canvas", "Model", "ModelConfig", "Region", "RenderOptions", "Synthesizer", "UserError", "build_generator", "init_model",
    "list_presets", "load_config", "load_model", "resolve_device", "resolve_dtype", "save_image",
]
