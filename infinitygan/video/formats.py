"""Containers, codecs and x264 presets of ``pan`` (no torch: the command line reads them at start-up)."""

#: extension -> (container format, codec, pixel format)
VIDEO_FORMATS = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".mkv": ("matroska", "libx264", "yuv420p"),
    ".webm": ("webm", "libvpx-vp9", "yuv420p"),
}

#: x264 speed presets (fastest first)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
