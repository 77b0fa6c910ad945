"""One description of a steered image: the ``Scene``.

A scene is a canvas (the seed of the local latents and noise, resampled regions with seeds of
their own, an optional horizontal period) plus a style field (style centres, each a global
latent and a place). It is built from Python, from ``generate`` options or from a YAML / JSON
scene file, and renders the same pixels however it is given and however the work is split.

Scene file (YAML or JSON; paths relative to the file)::

    model: landscapes.safetensors       # optional (default: the command's --model)
    seed: 3                             # local latents and noise (and the background style)
    cyclic: 2224                        # optional period in pixels (a multiple of 16)
    kernel: 127                         # optional mean-filter size (odd; default 8 * lattice - 1)
    region: [x, y, width, height]       # optional default region
    centres:
      - {seed: 5, point: [-600, 0]}
      - {seed: 7, box: [0, -64, 256, 128]}
      - {zg: style.npy, mask: {file: lake.png, x: 400, y: -40}}
    styles_along_x: {seeds: [1, 2, 3], spacing: 1024, x: 0, y: 2}   # ALIS-style shorthand
    resample:
      - {region: [100, -50, 200, 100], seed: 42}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..coords import HORIZON_ROW
from ..errors import UserError, check_int, shown
from .field import Box, Mask, Place, Point


@dataclass
class StyleCentre:
    """A style (the global latent of canvas ``seed``, or a given ``zg`` (zg_dim,)) and its place."""

    place: Place
    seed: int | None = None
    zg: torch.Tensor | None = None

    def __post_init__(self):
        if (self.seed is None) == (self.zg is None):
            raise UserError("a style centre needs exactly one of a seed or a zg vector")
        if self.place is None:
            raise UserError("a style centre needs a place (point, box or mask)")


@dataclass(frozen=True)
class Resample:
    """Replace zl and noise of the pixel rectangle [x, x + width) x [y, y + height) by those of ``seed``."""

    x: int
    y: int
    width: int
    height: int
    seed: int

    def __post_init__(self):
        from ..tiling import MAX_POSITION, MAX_SIDE

        for name in ("x", "y", "width", "height", "seed"):
            object.__setattr__(self, name, check_int(f"a resampled region's {name}", getattr(self, name)))
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"a resampled region needs a positive size, got {self.width}x{self.height}")
        if self.width > MAX_SIDE or self.height > MAX_SIDE or max(abs(self.x), abs(self.y)) > MAX_POSITION:
            raise UserError(f"a resampled region must lie within +-2^60 with sides up to {MAX_SIDE:,} pixels, got "
                            f"{self.width}x{self.height} at ({self.x}, {self.y})")


#: longest cyclic period (pixels): a 360-degree view is one image of that width (PNG / TIFF limit)
MAX_PERIOD = 2 ** 31 - 16
#: widest fusion kernel (pixels): the filter's integral images grow with its square per style
MAX_KERNEL = 2047
#: most style centres (and resampled regions) of one scene: every tile checks each of them
MAX_CENTRES = 1024


@dataclass
class Scene:
    """Everything that defines the pixels of a steered infinite image (besides the model).

    seed: seed of the canvas (zl, noise); also the style where no centre claims a pixel.
    centres: style centres (none: plain synthesis of ``seed``'s style).
    resample: regions whose zl and noise come from another seed.
    cyclic: horizontal period in pixels, or None.
    kernel: mean-filter size in pixels (odd), or None for the model's default (8 * lattice - 1,
      127 for the 16-pixel lattice of paper-101 and tiny, as in the paper).
    """

    seed: int = 0
    centres: list[StyleCentre] = field(default_factory=list)
    resample: list[Resample] = field(default_factory=list)
    cyclic: int | None = None
    kernel: int | None = None
    model: str | None = None
    region: tuple[int, int, int, int] | None = None

    def __post_init__(self):
        if self.cyclic is not None and (self.cyclic <= 0 or self.cyclic % 16 or self.cyclic > MAX_PERIOD):
            raise UserError(f"the cyclic period must be a positive multiple of 16 pixels up to {MAX_PERIOD:,}, "
                            f"got {self.cyclic}")
        if self.kernel is not None and (self.kernel <= 0 or self.kernel % 2 == 0 or self.kernel > MAX_KERNEL):
            raise UserError(f"the fusion kernel must be a positive odd number of pixels up to {MAX_KERNEL}, "
                            f"got {self.kernel}")
        if len(self.centres) > MAX_CENTRES or len(self.resample) > MAX_CENTRES:
            raise UserError(f"a scene holds at most {MAX_CENTRES:,} style centres and {MAX_CENTRES:,} resampled "
                            f"regions, got {len(self.centres)} and {len(self.resample)}")

    @property
    def plain(self) -> bool:
        return not self.centres and not self.resample and self.cyclic is None

    # ---- files -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Scene":
        """Read a YAML or JSON scene file (see the module docstring)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise UserError(f"cannot read scene file {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise UserError(f"scene file {path} is not text (YAML or JSON, UTF-8)") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                from ..io import safe_yaml

                data = safe_yaml.load(text)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"scene file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {msg}") from None
        return cls.from_dict(data, base=path.parent, name=str(path))

    @classmethod
    def from_dict(cls, data: Any, base: Path | None = None, name: str = "scene") -> "Scene":
        base = Path(".") if base is None else base
        if not isinstance(data, dict):
            raise UserError(f"{name}: a scene must be a mapping (seed, centres, resample, cyclic, ...)")
        known = {"model", "seed", "centres", "centers", "styles_along_x", "resample", "cyclic", "kernel", "region"}
        bad = sorted(set(data) - known)
        if bad:
            raise UserError(f"{name}: unknown scene key(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
        seed = _int(data.get("seed", 0), f"{name}: seed")
        centres = [_centre(c, base, f"{name}: centre {i + 1}")
                   for i, c in enumerate(_list(data.get("centres", data.get("centers")), f"{name}: centres"))]
        if "styles_along_x" in data:
            centres += _along_x(data["styles_along_x"], f"{name}: styles_along_x")
        if ("centres" in data or "centers" in data or "styles_along_x" in data) and not centres:
            raise UserError(f"{name}: the scene lists no style centres (N = 0)")
        resample = [_resample(r, f"{name}: resample {i + 1}")
                    for i, r in enumerate(_list(data.get("resample"), f"{name}: resample"))]
        cyclic = None if data.get("cyclic") is None else _int(data["cyclic"], f"{name}: cyclic")
        kernel = None if data.get("kernel") is None else _int(data["kernel"], f"{name}: kernel")
        region = None
        if data.get("region") is not None:
            region = tuple(_ints(data["region"], 4, f"{name}: region"))
            if region[2] <= 0 or region[3] <= 0:
                raise UserError(f"{name}: region size must be positive")
        model = data.get("model")
        if model is not None:
            if not isinstance(model, str):
                raise UserError(f"{name}: model must be a path")
            model = str((base / model)) if not Path(model).is_absolute() else model
        return cls(seed, centres, resample, cyclic, kernel, model, region)


def styles_along_x(seeds: list[int], spacing: int, x: int = 0, y: int = HORIZON_ROW) -> list[StyleCentre]:
    """ALIS-style shorthand: point centres of ``seeds`` at x, x + spacing, x + 2 spacing, ... on row y."""
    if spacing <= 0:
        raise UserError(f"styles_along_x spacing must be positive, got {spacing}")
    if not seeds:
        raise UserError("styles_along_x needs at least one seed")
    return [StyleCentre(Point(x + i * spacing, y), seed=int(s)) for i, s in enumerate(seeds)]


# ---- parsing helpers ------------------------------------------------------------------------
def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise UserError(f"{what} must be an integer, got {shown(v)}")
    return v


def _ints(v: Any, n: int, what: str) -> list[int]:
    if isinstance(v, str):
        v = [p for p in v.replace(" ", "").split(",")]
        try:
            v = [int(p) for p in v]
        except ValueError:
            raise UserError(f"{what} must be {n} integers, got {shown(v)}") from None
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise UserError(f"{what} must be {n} integers, got {shown(v)}")
    return [_int(p, what) for p in v]


def _list(v: Any, what: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise UserError(f"{what} must be a list")
    return v


def _centre(c: Any, base: Path, what: str) -> StyleCentre:
    if not isinstance(c, dict):
        raise UserError(f"{what} must be a mapping (seed or zg, and point, box or mask)")
    bad = sorted(set(c) - {"seed", "zg", "point", "box", "mask"})
    if bad:
        raise UserError(f"{what}: unknown key(s) {', '.join(bad)}")
    places = [k for k in ("point", "box", "mask") if k in c]
    if not places:
        raise UserError(f"{what} has no place (give one of point: [x, y], box: [x, y, w, h], mask: {{file, x, y}})")
    if len(places) > 1:
        raise UserError(f"{what} has several places ({', '.join(places)}); give exactly one")
    if ("seed" in c) == ("zg" in c):
        raise UserError(f"{what} needs exactly one of seed or zg (a vector file)")
    if "point" in c:
        place: Place = Point(*_ints(c["point"], 2, f"{what}: point"))
    elif "box" in c:
        x, y, w, h = _ints(c["box"], 4, f"{what}: box")
        if w <= 0 or h <= 0:
            raise UserError(f"{what}: box size must be positive, got {w}x{h}")
        place = Box(x, y, w, h)
    else:
        m = c["mask"]
        if not isinstance(m, dict) or "file" not in m:
            raise UserError(f"{what}: mask must be {{file: PNG, x: X, y: Y}}")
        place = Mask(_int(m.get("x", 0), f"{what}: mask x"), _int(m.get("y", 0), f"{what}: mask y"),
                     load_mask(_path(base, m["file"]), what))
    if "seed" in c:
        return StyleCentre(place, seed=_int(c["seed"], f"{what}: seed"))
    return StyleCentre(place, zg=load_zg(_path(base, c["zg"]), what))


def _path(base: Path, p: Any) -> Path:
    if not isinstance(p, str):
        raise UserError(f"a file name must be a string, got {shown(p)}")
    q = Path(p)
    return q if q.is_absolute() else base / q


def _along_x(v: Any, what: str) -> list[StyleCentre]:
    if not isinstance(v, dict) or "seeds" not in v or "spacing" not in v:
        raise UserError(f"{what} must be {{seeds: [..], spacing: S, x: X, y: Y}}")
    seeds = _list(v["seeds"], f"{what}: seeds")
    return styles_along_x([_int(s, f"{what}: seed") for s in seeds], _int(v["spacing"], f"{what}: spacing"),
                          _int(v.get("x", 0), f"{what}: x"), _int(v.get("y", HORIZON_ROW), f"{what}: y"))


def _resample(r: Any, what: str) -> Resample:
    if not isinstance(r, dict) or "region" not in r or "seed" not in r:
        raise UserError(f"{what} must be {{region: [x, y, w, h], seed: S}}")
    x, y, w, h = _ints(r["region"], 4, f"{what}: region")
    return Resample(x, y, w, h, _int(r["seed"], f"{what}: seed"))


#: largest mask image (pixels), refused from its header before decoding
MAX_MASK_PIXELS = 64 * 2 ** 20


def load_mask(path: Path, what: str = "mask") -> np.ndarray:
    """A PNG (or any image Pillow reads) as a boolean mask: pixels brighter than half (alpha
    counts when present). (h, w) bool."""
    from PIL import UnidentifiedImageError

    from ..io.images import open_image

    if not path.exists():
        raise UserError(f"{what}: mask file {path} not found")
    try:
        with open_image(path, MAX_MASK_PIXELS, f"a mask holds at most {MAX_MASK_PIXELS // 2**20} megapixels") as im:
            im.load()
            if im.mode in ("RGBA", "LA") or "transparency" in im.info:
                a = np.asarray(im.convert("RGBA"))
                m = (a[..., 3] >= 128) & (a[..., :3].mean(-1) >= 128)
            else:
                m = np.asarray(im.convert("L")) >= 128
    except UserError as e:  # too large, not an image
        raise UserError(f"{what}: mask {e}") from None
    except FileNotFoundError:
        raise UserError(f"{what}: mask file {path} not found") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UserError(f"{what}: mask file {path} is not an image") from None
    if not m.any():
        raise UserError(f"{what}: mask {path} has no pixel set (white = inside)")
    return np.ascontiguousarray(m)


def load_zg(path: Path, what: str = "zg") -> torch.Tensor:
    """A global latent from a .npy file ((zg_dim,) or (1, zg_dim)) or a safetensors file with one tensor."""
    try:
        if path.suffix.lower() == ".npy":
            a = np.load(path, allow_pickle=False)
            t = torch.from_numpy(np.asarray(a, dtype=np.float32))
        elif path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            d = load_file(str(path))
            if len(d) != 1:
                raise UserError(f"{what}: {path} must hold exactly one tensor (the zg vector)")
            t = next(iter(d.values())).float()
        else:
            raise UserError(f"{what}: zg file {path} must be .npy or .safetensors")
    except FileNotFoundError:
        raise UserError(f"{what}: zg file {path} not found") from None
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a corrupt file is the user's input
        raise UserError(f"{what}: {path} is not a readable zg vector") from None
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise UserError(f"{what}: zg in {path} must be a vector (zg_dim,), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise UserError(f"{what}: zg in {path} has non-finite values")
    return t
