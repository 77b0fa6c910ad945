"""Fly-through videos of the endless image (``infinitygan pan``): a camera moving horizontally,
each column rendered once, frames encoded by PyAV (``pan``); the command in ``cli``."""
from .pan import VIDEO_FORMATS, X264_PRESETS, Camera, check_video_path, encode_video, pan_frames, pan_to_file

__all__ = ["VIDEO_FORMATS", "X264_PRESETS", "Camera", "check_video_path", "encode_video", "pan_frames", "pan_to_file"]
