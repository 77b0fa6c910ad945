"""Fly-through videos of the endless image (``infinitygan pan``): a camera moving horizontally,
each column rendered once, frames encoded by PyAV (``pan``); the command in ``cli``."""
from ..lazy import exports as _exports

_EXPORTS = {n: "pan" for n in ("VIDEO_FORMATS", "X264_PRESETS", "Camera", "check_video_path", "encode_video",
                               "pan_frames", "pan_to_file")}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
