"""The size arithmetic of the padding-free generator, in one place.

Every feature map lives on an infinite integer lattice of its own ("global frame").

* zl, the coordinates and zS share the latent-cell lattice. A GS layer with kernel k maps cells
  [a, b) to [a + r, b - r), r = (k - 1) / 2; L layers need a margin of L r cells (12 for the
  paper's 4 x 7x7).
* A GT upsampling conv maps [a, b) to [2a + 2, 2b - 1) (transposed 3x3 stride 2 puts input i at
  2i..2i+2, a 1-pixel crop and a valid 3-tap blur follow); a plain 3x3 conv maps [a, b) to
  [a + 1, b - 1). After K stages, zS cells [s, s + n) give output indices
  [2^K s + 3 (2^K - 1), 2^K (s + n) - 2 (2^K - 1)), i.e. 2^K n - 5 (2^K - 1) pixels
  (16 n - 75 for K = 4: 11 -> 101).
* Output pixel coordinates are shifted by 3 (2^K - 1) so that the window starting at zS cell s
  starts at pixel 2^K s: the "lattice" of the generator is 2^K pixels (16 for paper-101).
"""
from __future__ import annotations

from dataclasses import dataclass


def floor_div(a: int, b: int) -> int:
    return a // b


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True)
class Geometry:
    """Layer arithmetic of a generator with ``n_up`` GT stages and ``gs_layers`` GS layers."""

    n_up: int = 4
    gs_layers: int = 4
    gs_kernel: int = 7
    padded = False  # padding-free: tiles agree pixel for pixel

    @property
    def lattice(self) -> int:
        """Output pixels per zS cell (2^K)."""
        return 2 ** self.n_up

    @property
    def gs_margin(self) -> int:
        """zl cells needed on each side of a zS window."""
        return self.gs_layers * (self.gs_kernel - 1) // 2

    @property
    def pixel_offset(self) -> int:
        """Global output index of pixel 0: 3 (2^K - 1)."""
        return 3 * (self.lattice - 1)

    @property
    def shrink(self) -> int:
        """Pixels lost by GT relative to 2^K n: 5 (2^K - 1) (75 for K = 4)."""
        return 5 * (self.lattice - 1)

    # ---- sizes -----------------------------------------------------------------------------
    def ts_output_size(self, n: int) -> int:
        """Output pixels of a zS window of n cells."""
        return self.lattice * n - self.shrink

    def gs_sizes(self, n: int) -> list[int]:
        """zl input size then every GS layer's output size for a zS window of n cells."""
        r = (self.gs_kernel - 1) // 2
        return [n + 2 * r * (self.gs_layers - i) for i in range(self.gs_layers + 1)]

    def ts_sizes(self, n: int) -> list[int]:
        """Output size of every GT conv for a zS window of n cells (2 per stage)."""
        return [b - a for a, b in self.ts_ranges(0, n)]

    def rgb_sizes(self, n: int) -> list[int]:
        """Size of the RGB after each ToRGB (one per stage)."""
        return self.ts_sizes(n)[1::2]

    # ---- positions -------------------------------------------------------------------------
    def ts_ranges(self, s: int, n: int) -> list[tuple[int, int]]:
        """Global-frame [start, stop) of every GT conv output for zS cells [s, s + n)."""
        a, b = s, s + n
        out = []
        for _ in range(self.n_up):
            a, b = 2 * a + 2, 2 * b - 1  # upsampling conv
            out.append((a, b))
            a, b = a + 1, b - 1  # 3x3 conv
            out.append((a, b))
        return out

    def zs_window(self, start: int, stop: int) -> tuple[int, int]:
        """The smallest zS window (s, n) whose output covers pixels [start, stop)."""
        if stop <= start:
            raise ValueError("empty pixel range")
        s = floor_div(start, self.lattice)
        end = ceil_div(stop + self.shrink, self.lattice)
        return s, end - s

    def pixel_range(self, s: int, n: int) -> tuple[int, int]:
        """Pixels [start, stop) produced by zS cells [s, s + n)."""
        return self.lattice * s, self.lattice * s + self.ts_output_size(n)


@dataclass(frozen=True)
class PaddedGeometry:
    """Size arithmetic of the zero-padded ``stylegan2-nci`` baseline (same interface as Geometry).

    No margins: n input cells give 2^K n pixels, each conv keeps its size, each upsampling
    doubles it. Zero padding makes pixels depend on where the input window ends, so this
    generator is not tileable: the engine synthesizes any region in one shot.
    """

    n_up: int = 4
    gs_layers: int = 0
    gs_kernel: int = 7
    padded: bool = True

    lattice = Geometry.lattice
    gs_margin = 0
    pixel_offset = 0
    shrink = 0

    def ts_output_size(self, n: int) -> int:
        return self.lattice * n

    def gs_sizes(self, n: int) -> list[int]:
        return [n]

    def ts_ranges(self, s: int, n: int) -> list[tuple[int, int]]:
        out = []
        for k in range(1, self.n_up + 1):
            r = (2 ** k * s, 2 ** k * (s + n))
            out += [r, r]
        return out

    ts_sizes = Geometry.ts_sizes
    rgb_sizes = Geometry.rgb_sizes

    def zs_window(self, start: int, stop: int) -> tuple[int, int]:
        s = floor_div(start, self.lattice)
        return s, ceil_div(stop, self.lattice) - s

    def pixel_range(self, s: int, n: int) -> tuple[int, int]:
        return self.lattice * s, self.lattice * (s + n)
