"""InfinityGAN (Lin et al., ICLR 2022): infinite-pixel image synthesis in PyTorch.

Quick start::

    import infinitygan as ig
    model = ig.load_model()                       # bundled model (or a path / run directory)
    img = model.generate(seed=3, width=2048, height=256)
    ig.save_image("pano.png", img)
"""
from .lazy import exports as _exports

__version__ = "0.1.0"

_EXPORTS = {
    "Model": "api", "build_generator": "api", "init_model": "api", "load_model": "api", "resolve_device": "api",
    "resolve_dtype": "api", "ModelConfig": "config", "list_presets": "config", "load_config": "config",
    "UserError": "errors", "save_image": "io.images", "Canvas": "latents", "RenderOptions": "render.options",
    "Region": "synthesis", "Synthesizer": "synthesis",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
