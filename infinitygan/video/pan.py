"""Fly-through video: a camera moving horizontally along the endless image (``infinitygan pan``).

The camera is a ``width`` x ``height`` window whose left edge at frame i is
``x0 + round(i * speed)`` (speed in pixels per frame, any sign, fractional allowed). Pixels are
rendered in vertical *strips* of ``strip`` columns on a fixed lattice-aligned grid of the image
(``x0_grid + k * strip``), each exactly once, and kept as uint8 in a rolling buffer: a frame is
a crop of the buffer, and columns the camera has left behind are dropped. Memory is therefore
bounded by one frame plus one strip (plus the engine's working set for one strip), whatever
the number of frames. Because the engine's pixels do not depend on the region asked for, every
frame equals the corresponding crop of a one-shot render of the whole swept region.

Frames are encoded with PyAV (its wheels carry ffmpeg): ``.mp4`` / ``.mkv`` (H.264, yuv420p),
``.webm`` (VP9). The file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from ..io.images import atomic_path, to_uint8
from ..latents import Canvas
from ..render.options import RenderOptions
from ..synthesis import Region, Synthesizer

from .formats import VIDEO_FORMATS, X264_PRESETS  # noqa: F401 (part of this module's API)

#: largest frame side the encoders take (H.264 and VP9 levels stop at 8192 pixels)
MAX_FRAME_SIDE = 8192

#: upper bound of --frames (a sanity limit: about 3.8 days of video at 30 fps)
MAX_FRAMES = 10_000_000


@dataclass(frozen=True)
class Camera:
    """A horizontal fly-through: frame i shows pixels [left(i), left(i) + width) x [y, y + height)."""

    x0: int
    y: int
    width: int
    height: int
    speed: float
    frames: int

    def __post_init__(self):
        if not (0 < self.width <= MAX_FRAME_SIDE and 0 < self.height <= MAX_FRAME_SIDE):
            raise UserError(f"frame sides must be in 1..{MAX_FRAME_SIDE} pixels (the encoders' limit), "
                            f"got {self.width}x{self.height}")
        if self.frames <= 0 or self.frames > MAX_FRAMES:
            raise UserError(f"--frames must be in 1..{MAX_FRAMES:,}, got {self.frames}")
        if not math.isfinite(self.speed):
            raise UserError(f"--speed must be a finite number, got {self.speed}")

    def left(self, i: int) -> int:
        """Left pixel column of frame i (half-pixel positions round up)."""
        return self.x0 + math.floor(i * self.speed + 0.5)

    def swept(self) -> Region:
        """The region every frame lies in (what a one-shot render would need)."""
        a, b = self.left(0), self.left(self.frames - 1)
        lo, hi = min(a, b), max(a, b)
        return Region(lo, self.y, hi - lo + self.width, self.height)


class StripBuffer:
    """Rendered uint8 columns [x0, x1) of the rows [y, y + height), grown strip by strip.

    Strips are the columns [origin + k * strip, origin + (k + 1) * strip); each is rendered once
    (``synth.render``) when the buffer must extend over it, and converted to uint8 at once.
    """

    def __init__(self, synth: Synthesizer, canvas: Canvas, y: int, height: int, strip: int, origin: int,
                 tile: int | None = None, batch: int | None = None):
        self.synth, self.canvas = synth, canvas
        self.y, self.height, self.strip, self.origin = y, height, strip, origin
        self.tile, self.batch = tile, batch
        self.x0 = self.x1 = origin
        self.pixels = np.zeros((height, 0, 3), np.uint8)
        self.strips_rendered = 0

    def _render(self, k: int) -> np.ndarray:
        x = self.origin + k * self.strip
        region = Region(x, self.y, self.strip, self.height)
        self.strips_rendered += 1
        return to_uint8(self.synth.render(self.canvas, region, self.tile, self.batch))

    def cover(self, a: int, b: int) -> None:
        """Make the buffer hold exactly the strips overlapping [a, b), dropping all others."""
        s, o = self.strip, self.origin
        ka, kb = (a - o) // s, -(-(b - o) // s)  # strips ka .. kb - 1
        lo, hi = o + ka * s, o + kb * s
        if self.pixels.shape[1] == 0 or hi <= self.x0 or lo >= self.x1:
            # nothing reusable (first frame, or a jump wider than the buffer)
            self.pixels = np.zeros((self.height, 0, 3), np.uint8)
            self.x0 = self.x1 = lo
        # drop what the camera has left behind, on either side
        keep0, keep1 = max(self.x0, lo), min(self.x1, hi)
        if keep0 < keep1:
            self.pixels = self.pixels[:, keep0 - self.x0: keep1 - self.x0]
            self.x0, self.x1 = keep0, keep1
        else:
            self.pixels = np.zeros((self.height, 0, 3), np.uint8)
            self.x0 = self.x1 = lo
        left = [self._render(k) for k in range((self.x0 - o) // s - 1, ka - 1, -1)] if self.x0 > lo else []
        right = [self._render(k) for k in range((self.x1 - o) // s, kb)] if self.x1 < hi else []
        if left or right:
            self.pixels = np.concatenate(left[::-1] + [self.pixels] + right, axis=1)
            self.x0, self.x1 = lo, hi

    def crop(self, a: int, width: int) -> np.ndarray:
        return self.pixels[:, a - self.x0: a - self.x0 + width]


def pan_frames(synth: Synthesizer, canvas: Canvas, camera: Camera, strip: int | None = None,
               tile: int | None = None, batch: int | None = None) -> Iterator[np.ndarray]:
    """Yield the camera's frames, uint8 (height, width, 3), rendered strip by strip.

    strip: columns rendered at a time (rounded to the lattice; default the engine's tile size).
    Each yielded array is a view into the rolling buffer: copy it to keep it past the next frame.
    """
    L = synth.geometry.lattice
    strip = synth.planner.tile_size(strip if strip is not None else tile)
    origin = (camera.left(0) // L) * L
    buf = StripBuffer(synth, canvas, camera.y, camera.height, strip, origin, tile, batch)
    for i in range(camera.frames):
        a = camera.left(i)
        buf.cover(a, a + camera.width)
        yield buf.crop(a, camera.width)


def check_video_path(path: str | Path) -> Path:
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VIDEO_FORMATS:
        raise UserError(f"unknown video extension {ext or '(none)'!r} for {path} (use {', '.join(VIDEO_FORMATS)})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    return path


def _av():
    try:
        import av
    except ImportError:
        raise UserError("video encoding needs PyAV: pip install 'infinitygan[video]'") from None
    return av


def encode_video(path: str | Path, frames: Iterator[np.ndarray], width: int, height: int, fps: int = 30,
                 crf: int = 18, preset: str = "veryfast", total: int | None = None,
                 progress: bool = False) -> Path:
    """Encode uint8 (height, width, 3) frames to ``path`` (.mp4, .mkv, .webm), atomically.

    crf: quality (H.264: 18 is about visually lossless, 0 lossless luma; VP9 uses crf + 13).
    preset: x264 speed preset (VP9 ignores it)."""
    path = check_video_path(path)
    fmt, codec, pix = VIDEO_FORMATS[path.suffix.lower()]
    if pix == "yuv420p" and (width % 2 or height % 2):
        raise UserError(f"{path.suffix} video needs an even width and height, got {width}x{height}")
    if not 1 <= fps <= 240:
        raise UserError(f"--fps must be in 1..240, got {fps}")
    if preset not in X264_PRESETS:
        raise UserError(f"unknown --preset {preset!r} (choose from {', '.join(X264_PRESETS)})")
    av = _av()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="pan", leave=False)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=fmt) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, pix
            # the encoders' look-ahead holds frames: 8 instead of x264's default 40 (+200 MB at 1080p)
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": preset, "rc-lookahead": "8"}
            else:
                stream.options = {"crf": str(crf + 13), "b": "0", "lag-in-frames": "8"}
            for img in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                container.mux(stream.encode(frame))
                if bar is not None:
                    bar.update(1)
            container.mux(stream.encode())
    if bar is not None:
        bar.close()
    return path


def pan_to_file(model, path: str | Path, seed: int, width: int, height: int, speed: float, frames: int,
                x: int | None = None, y: int | None = None, fps: int = 30, crf: int = 18,
                preset: str = "veryfast", strip: int | None = None, options: RenderOptions | None = None,
                **settings) -> Path:
    """Render a fly-through of image ``seed`` of a ``Model`` and encode it to ``path``.

    Default position: the first frame centred on x = 0 and on the horizon. ``options`` /
    ``settings``: the render request (``RenderOptions``: tile, batch, device, dtype, memory
    budget, progress).
    """
    options = RenderOptions.of(options, **settings)
    region = model.region(width, height, x, y)
    camera = Camera(region.x, region.y, width, height, float(speed), int(frames))
    check_video_path(path)
    synth = options.synthesizer(model)
    it = pan_frames(synth, model.canvas(seed), camera, strip, options.tile, options.batch)
    return encode_video(path, it, width, height, fps, crf, preset, total=frames, progress=options.progress)
