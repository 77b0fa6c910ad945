"""Input/output: image writers (streaming, atomic) and model files (safetensors + JSON config)."""
from .checkpoint import load_model_file, save_model_file
from .images import EXTENSIONS, check_output, check_output_path, save_image, to_uint8, write_tiles

__all__ = ["EXTENSIONS", "check_output", "check_output_path", "load_model_file", "save_image", "save_model_file",
           "to_uint8", "write_tiles"]
