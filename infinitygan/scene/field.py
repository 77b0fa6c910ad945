"""The style field of spatial style fusion (paper Section 4.3, Appendix L): where each style lives.

A style field is a set of *places*, each labelled with a style index:

* ``Point(x, y)``: pixels go to the nearest point (the paper's style centres);
* ``Box(x, y, width, height)``: the pixels [x, x + width) x [y, y + height);
* ``Mask(x, y, mask)``: a free-form boolean mask (h, w) whose top-left pixel is (x, y).

The *initial fusion map* is one-hot in pixel space: a pixel takes the label of the box or mask
that contains it (boxes and masks may not overlap), else of the nearest point (ties: the first
point), else the ``background`` label. The fusion weights are that map smoothed by a k x k mean
(box) filter (k odd): weight_c(p) = #{q in the k x k square around p with label c} / k^2. They
are a pure function of (places, position): a window is computed from the labels of the window
plus a (k - 1) / 2 margin, with integral images (exact integer counts). Positions are Python /
int64 integers of any size (|x| up to 2^40 and beyond).

With ``period`` P (cyclic panoramas) the labels are periodic in x: distances to points are
measured around the circle and boxes / masks repeat every P pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError, check_int
from ..tiling import MAX_POSITION

#: below this distance (pixels, on both axes) squared distances stay under 2^51 and float64
#: compares them exactly: the fast path of the nearest-point labels
_EXACT_FLOAT = 2 ** 25


def _place(name: str, v) -> int:
    v = check_int(name, v)
    if abs(v) > MAX_POSITION:
        raise UserError(f"{name} must stay within +-2^60, got {v}")
    return v


@dataclass(frozen=True)
class Point:
    x: int
    y: int

    def __post_init__(self):
        object.__setattr__(self, "x", _place("a point's x", self.x))
        object.__setattr__(self, "y", _place("a point's y", self.y))

    def bbox(self):
        return None


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    def __post_init__(self):
        for name in ("x", "y", "width", "height"):
            object.__setattr__(self, name, _place(f"a box's {name}", getattr(self, name)))
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"a box must have a positive size, got {self.width}x{self.height}")

    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), half-open."""
        return self.x, self.y, self.x + self.width, self.y + self.height


@dataclass(frozen=True, eq=False)
class Mask:
    """A free-form region: ``mask`` (h, w) bool numpy array placed with its top-left pixel at (x, y)."""

    x: int
    y: int
    mask: np.ndarray

    def __post_init__(self):
        if self.mask.ndim != 2 or self.mask.dtype != bool:
            raise UserError("a mask must be a 2-D boolean image")
        if not self.mask.any():
            raise UserError("a mask must have at least one pixel set")

    def bbox(self) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        return self.x, self.y, self.x + w, self.y + h


Place = Point | Box | Mask


def _member(place: Box | Mask, ys: torch.Tensor, xs: torch.Tensor, period: int | None) -> torch.Tensor:
    """(H, W) bool: pixels (ys x xs) inside the place. ys, xs: (H,), (W,) int64 absolute pixels."""
    x0, y0, x1, y1 = place.bbox()
    dy = ys - y0
    dx = xs - x0
    if period is not None:
        dx = torch.remainder(dx, period)
    iny = (dy >= 0) & (dy < y1 - y0)
    inx = (dx >= 0) & (dx < x1 - x0)
    if isinstance(place, Box):
        return iny[:, None] & inx[None, :]
    m = torch.from_numpy(place.mask)
    out = torch.zeros(ys.shape[0], xs.shape[0], dtype=torch.bool)
    if iny.any() and inx.any():
        ri = torch.nonzero(iny).flatten()
        ci = torch.nonzero(inx).flatten()
        sub = m[dy[ri]][:, dx[ci]]
        out[ri[:, None], ci[None, :]] = sub
    return out


@dataclass
class StyleField:
    """Places with style labels; the fusion weights of any window (see the module docstring).

    places: the places; labels[i]: style index of places[i]; background: the style index of
    pixels claimed by nothing (used only when there are no points); kernel: the mean filter's
    size k (odd); period: the horizontal period in pixels (cyclic) or None.
    """

    places: list[Place]
    labels: list[int]
    background: int | None
    kernel: int
    period: int | None = None
    _points: torch.Tensor = field(init=False, repr=False)
    _point_labels: list[int] = field(init=False, repr=False)
    _regions: list[tuple[Box | Mask, int]] = field(init=False, repr=False)

    def __post_init__(self):
        if len(self.places) != len(self.labels):
            raise ValueError("one label per place")
        if not self.places:
            raise UserError("a style field needs at least one style centre")
        if self.kernel <= 0 or self.kernel % 2 == 0:
            raise UserError(f"the fusion kernel must be a positive odd number of pixels, got {self.kernel}")
        pts = [(p, c) for p, c in zip(self.places, self.labels) if isinstance(p, Point)]
        self._points = torch.tensor([[p.x, p.y] for p, _ in pts], dtype=torch.int64).reshape(-1, 2)
        self._point_labels = [c for _, c in pts]
        self._regions = [(p, c) for p, c in zip(self.places, self.labels) if not isinstance(p, Point)]
        if not pts and self.background is None:
            raise UserError("a style field without points needs a background style")
        seen = {}
        for p, c in pts:
            key = (p.x % self.period if self.period else p.x, p.y)
            if key in seen and seen[key] != c:
                raise UserError(f"two style centres at the same point ({p.x}, {p.y}) cannot be resolved")
            seen[key] = c
        self._check_overlaps()

    @property
    def radius(self) -> int:
        return (self.kernel - 1) // 2

    # ---- validation ----------------------------------------------------------------------------
    def _check_overlaps(self) -> None:
        P = self.period
        regs = [p for p, _ in self._regions]
        for p in regs:
            if P is not None and p.bbox()[2] - p.bbox()[0] > P:
                raise UserError(f"a box or mask is wider ({p.bbox()[2] - p.bbox()[0]} px) than the cyclic period {P}")
        for i in range(len(regs)):
            for j in range(i + 1, len(regs)):
                a, b = regs[i], regs[j]
                ax0, ay0, ax1, ay1 = a.bbox()
                bx0, by0, bx1, by1 = b.bbox()
                y0, y1 = max(ay0, by0), min(ay1, by1)
                if y0 >= y1:
                    continue
                shifts = [0] if P is None else [k * P + (ax0 - ax0 % P) - (bx0 - bx0 % P) for k in (-1, 0, 1)]
                for s in shifts:
                    x0, x1 = max(ax0, bx0 + s), min(ax1, bx1 + s)
                    if x0 >= x1:
                        continue
                    if isinstance(a, Box) and isinstance(b, Box):
                        hit = True
                    else:
                        ys = torch.arange(y0, y1, dtype=torch.int64)
                        xs = torch.arange(x0, x1, dtype=torch.int64)
                        hit = bool((_member(a, ys, xs, P) & _member(b, ys, xs, P)).any())
                    if hit:
                        raise UserError(f"style regions {i + 1} and {j + 1} (boxes / masks) overlap; "
                                        "overlapping definitions cannot be resolved")

    # ---- labels --------------------------------------------------------------------------------
    def labels_window(self, y0: int, height: int, x0: int, width: int) -> torch.Tensor:
        """The one-hot fusion map as labels: (height, width) int64 for pixels [y0, +h) x [x0, +w)."""
        ys = torch.arange(height, dtype=torch.int64) + y0
        xs = torch.arange(width, dtype=torch.int64) + x0
        if len(self._point_labels):
            out = self._nearest_point(ys, xs)
        else:
            out = torch.full((height, width), int(self.background), dtype=torch.int64)
        for place, c in self._regions:
            bx0, by0, bx1, by1 = place.bbox()
            if by1 <= y0 or by0 >= y0 + height:
                continue
            if self.period is None and (bx1 <= x0 or bx0 >= x0 + width):
                continue
            out[_member(place, ys, xs, self.period)] = c
        return out

    def _nearest_point(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """(H, W) labels of the nearest point (ties: the first), exact at any distance: float64
        while every squared distance is below 2^51, exact integers beyond."""
        pts = self._points.tolist()
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
        P = self.period
        reach = max(max(abs(y0 - py), abs(y1 - py),
                        P // 2 + 1 if P is not None else max(abs(x0 - px), abs(x1 - px))) for px, py in pts)
        if reach < _EXACT_FLOAT:
            return self._nearest_float(ys, xs)
        if P is not None:
            return self._nearest_periodic_exact(ys, xs)
        return self._nearest_exact(y0, ys.shape[0], x0, xs.shape[0])

    def _nearest_float(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        best = None
        lab = None
        for (px, py), c in zip(self._points.tolist(), self._point_labels):
            dx = xs - px
            if self.period is not None:
                dx = torch.remainder(dx, self.period)
                dx = torch.minimum(dx, self.period - dx)
            dy = ys - py
            d = dy.to(torch.float64).square()[:, None] + dx.to(torch.float64).square()[None, :]
            if best is None:
                best, lab = d, torch.full(d.shape, c, dtype=torch.int64)
            else:
                closer = d < best  # ties keep the earlier point
                lab.masked_fill_(closer, c)
                torch.minimum(best, d, out=best)
        return lab

    def _nearest_periodic_exact(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Around the circle |dx| <= P / 2: per row, the points whose dy^2 exceeds the row's
        smallest by more than (P / 2)^2 cannot win; the others' distances minus that smallest
        are below 2^61 for P < 2^31 and compare exactly in int64."""
        P = self.period
        pts = self._points.tolist()
        dy2 = [[(int(y) - py) ** 2 for _, py in pts] for y in ys.tolist()]  # Python ints, any size
        cap, never = (P // 2) ** 2, 2 ** 62
        rel = []
        for row in dy2:
            m = min(row)
            rel.append([d - m if d - m <= cap else never for d in row])
        rel = torch.tensor(rel, dtype=torch.int64)  # (H, N)
        best = lab = None
        for k, ((px, _), c) in enumerate(zip(pts, self._point_labels)):
            dx = torch.remainder(xs - px, P)
            dx = torch.minimum(dx, P - dx)
            d = rel[:, k:k + 1] + dx.square()[None, :]
            if best is None:
                best, lab = d, torch.full(d.shape, c, dtype=torch.int64)
            else:
                closer = d < best
                lab.masked_fill_(closer, c)
                torch.minimum(best, d, out=best)
        return lab

    def _nearest_exact(self, y0: int, height: int, x0: int, width: int) -> torch.Tensor:
        """Exact nearest points of a window far from some point (no period), row by row: along
        a row, |p - q|^2 - x^2 is linear in x, so the winner changes at integer crossings
        computed with Python integers (ties keep the earlier point)."""
        pts = self._points.tolist()
        n = len(pts)
        slope = [2 * (x0 - px) for px, _ in pts]  # d_p(x0 + i) - i^2 = K_p + slope_p * i
        out = torch.empty(height, width, dtype=torch.int64)
        for j in range(height):
            y = y0 + j
            K = [(y - py) ** 2 + (x0 - px) ** 2 for px, py in pts]

            def winner(i: int) -> int:
                return min(range(n), key=lambda p: (K[p] + slope[p] * i, p))

            i, w = 0, winner(0)
            while True:
                nxt = None
                for p in range(n):
                    ds = slope[p] - slope[w]
                    if p == w or ds >= 0:
                        continue  # a line with a larger or equal slope cannot overtake later
                    dk = K[p] - K[w]  # p beats w at i' once dk + ds * i' < 0 (<= 0 when p is earlier)
                    at = -(dk // ds) if p < w else dk // (-ds) + 1
                    at = max(at, i + 1)
                    nxt = at if nxt is None else min(nxt, at)
                stop = width if nxt is None else min(nxt, width)
                out[j, i:stop] = self._point_labels[w]
                if stop >= width:
                    break
                i, w = stop, winner(stop)
        return out

    def point_label(self, y: int, x: int) -> int:
        """The label of one pixel."""
        return int(self.labels_window(y, 1, x, 1)[0, 0])

    # ---- single-style test -----------------------------------------------------------------------
    def single_label(self, y0: int, y1: int, x0: int, x1: int) -> int | None:
        """The one label of every fusion weight at pixels [y0, y1] x [x0, x1] (inclusive), if any.

        True when the one-hot map is constant over the rectangle grown by the filter radius, so
        the weights there are exactly one-hot. Exact or conservative (None may be returned for
        a constant rectangle touched by a mask's bounding box).
        """
        r = self.radius
        y0, y1, x0, x1 = y0 - r, y1 + r, x0 - r, x1 + r
        P = self.period
        for place, c in self._regions:
            bx0, by0, bx1, by1 = place.bbox()
            if by1 <= y0 or by0 > y1:
                continue
            if P is None and (bx1 <= x0 or bx0 > x1):
                continue
            if P is not None and not self._wrap_overlap(x0, x1, bx0, bx1 - bx0):
                continue
            # the rectangle touches this place: single only if it lies inside a box
            # (boxes and masks do not overlap, so no other place touches it then)
            if isinstance(place, Box) and by0 <= y0 and y1 < by1:
                if P is None and bx0 <= x0 and x1 < bx1:
                    return c
                if P is not None and (x0 - bx0) % P + (x1 - x0) < bx1 - bx0:
                    return c
            return None
        if not len(self._point_labels):
            return int(self.background)
        # Voronoi cells (with first-point tie breaking) are intersections of half-planes, hence
        # convex: the rectangle lies in one cell iff its four corners do. Around the circle the
        # cells are those of the points' periodic images, so the corners must share the image.
        if P is not None and x1 - x0 + 1 >= P // 2:
            return None
        corners = {self._nearest_image(y, x) for y in (y0, y1) for x in (x0, x1)}
        return self._point_labels[corners.pop()[0]] if len(corners) == 1 else None

    def _nearest_image(self, y: int, x: int) -> tuple[int, int]:
        """(point index, image) of the point nearest to pixel (x, y), with labels_window's tie rule."""
        best, arg = None, None
        for i, (px, py) in enumerate(self._points.tolist()):
            if self.period is None:
                cands = [(x - px, 0)]
            else:
                m = (x - px) % self.period
                k = (x - px - m) // self.period
                cands = [(m, k), (self.period - m, k + 1)]
            for dx, k in cands:
                d = (y - py) ** 2 + dx ** 2  # exact integers, as labels_window
                if best is None or d < best:
                    best, arg = d, (i, k)
        return arg

    def _wrap_overlap(self, x0: int, x1: int, bx0: int, w: int) -> bool:
        """Does [x0, x1] (inclusive) meet the periodic interval [bx0, bx0 + w) mod P?"""
        P = self.period
        start = (x0 - bx0) % P  # offset of x0 into the period, from the place's start
        return start < w or start + (x1 - x0 + 1) > P

    # ---- weights -------------------------------------------------------------------------------
    def window(self, y0: int, y1: int, x0: int, x1: int) -> "WeightWindow":
        """Integral images covering the fusion weights at pixels [y0, y1] x [x0, x1] (inclusive)."""
        return WeightWindow(self, y0, y1, x0, x1)


class WeightWindow:
    """Integral images of the one-hot map over pixels [y0 - r, y1 + r] x [x0 - r, x1 + r].

    ``weights(ys, xs)`` gives the fusion weights at any pixels inside [y0, y1] x [x0, x1]:
    float32 (N', H, W) for the labels ``present`` (N',). The k x k box sum is separable: a
    running sum along x (kept, (N', rows, cols + 1)), differenced at the asked columns, then a
    running sum along y differenced at the asked rows. Counts are integers below 2^24, exact in
    float32; memory N' x (window + 2 r)^2 floats.
    """

    def __init__(self, fld: StyleField, y0: int, y1: int, x0: int, x1: int):
        r = fld.radius
        self.k2 = float(fld.kernel * fld.kernel)
        self.Y0, self.X0 = y0 - r, x0 - r
        self.r = r
        lab = fld.labels_window(self.Y0, y1 - y0 + 1 + 2 * r, self.X0, x1 - x0 + 1 + 2 * r)
        self.present = torch.nonzero(torch.bincount(lab.flatten())).flatten().tolist()
        cs = torch.zeros(len(self.present), lab.shape[0], lab.shape[1] + 1, dtype=torch.float32)
        for i, c in enumerate(self.present):
            torch.cumsum((lab == c).to(torch.float32), dim=1, out=cs[i, :, 1:])
        self.cs = cs

    def weights(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """(N', len(ys), len(xs)) float32 weights at absolute pixel rows ys and columns xs (int64)."""
        a = ys - self.Y0 - self.r  # index of the first row of each square in the window
        b = xs - self.X0 - self.r
        k = 2 * self.r + 1
        rows = self.cs.index_select(2, b + k) - self.cs.index_select(2, b)  # (N', H, nx): sums along x
        cy = torch.zeros(rows.shape[0], rows.shape[1] + 1, rows.shape[2], dtype=torch.float32)
        torch.cumsum(rows, dim=1, out=cy[:, 1:])
        cnt = cy.index_select(1, a + k) - cy.index_select(1, a)
        return cnt / self.k2
