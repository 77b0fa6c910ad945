"""Input/output: image writers (streaming, atomic) and model files (safetensors + JSON config)."""
from ..lazy import exports as _exports

_EXPORTS = {"load_model_file": "checkpoint", "save_model_file": "checkpoint", "EXTENSIONS": "images",
            "check_output": "images", "check_output_path": "images", "save_image": "images", "to_uint8": "images",
            "write_tiles": "images"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
