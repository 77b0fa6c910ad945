"""The latents file: everything an inverted image's pixels depend on, in one safetensors file.

tensors (float32 unless noted):
  zg          (zg_dim,)                  global latent (modulates GS)
  styles      (n_styles, style_dim)      W+ styles of GT (w space)
  zl          (zl_dim, h, w)             local latents of the image's footprint, GS margin included
  noise.{j}   (1, h_j, w_j)              noise of GT conv j over the footprint, margins included
  target      (H, W, 3) uint8            the image that was inverted (for paste-back)
  mask        (H, W) uint8               1 where the image's pixels were known
metadata (strings):
  format = "infinitygan-latents", version = "1"
  model       identity of the model (``model_identity``): latents only fit the model they came from
  region      JSON [x, y, width, height]: where the image sits on the canvas (pixels)
  zl_origin   JSON [row0, col0] of the zl window (latent-cell lattice)
  noise_origins JSON [[row0, col0], ...] per GT conv (that conv's lattice)
  options     JSON of the inversion options; metrics: JSON (psnr, ...); source: the image path

Reading checks the format, the shapes against the model's config and the footprint of the
region, and the model identity, and raises ``UserError`` (one line) for anything else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, shown
from ..io.checkpoint import save_safetensors
from ..io.images import check_input_file, check_writable
from ..latents import Canvas, noise_level
from ..synthesis import Region
from .footprint import Footprint, Window, footprint

FORMAT = "infinitygan-latents"
VERSION = "1"


def model_identity(model) -> str:
    """sha256 (hex, 16 chars) of the model's config and every generator tensor (name, shape, values)."""
    h = hashlib.sha256()
    h.update(json.dumps(dataclasses.asdict(model.config.generator), sort_keys=True).encode())
    for name, t in sorted(model.generator.state_dict().items()):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Latents:
    """Inverted latents of one image at ``region`` of the canvas (see the module docstring)."""

    zg: torch.Tensor
    styles: torch.Tensor
    zl: torch.Tensor
    noises: list[torch.Tensor]
    footprint: Footprint
    region: Region
    model_id: str
    target: np.ndarray | None = None
    mask: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    source: str = ""
    period: int | None = None  # cyclic canvas: horizontal period in pixels the image was inverted on

    def canvas(self, seed: int, region: Region | None = None) -> Canvas:
        """The canvas of ``seed`` with these latents pasted over it (zg, zl, noise); on a cyclic
        inversion, a periodic canvas with a copy every period across ``region`` (default: the image's)."""
        c = Canvas(int(seed), self.zg.shape[0], self.zl.shape[0], global_latent=self.zg.clone(),
                   **({"period": self.period // lattice_of(self)} if self.period else {}))
        self.paste(c, region)
        return c

    def paste(self, canvas: Canvas, region: Region | None = None) -> None:
        """Add this image's zl and noise windows to a canvas's overrides (zg and styles are not
        touched); with a period, one copy per period over ``region`` and its margins."""
        for k in self.copies(region):
            dc = k * (self.period or 0) // lattice_of(self)  # shift in latent cells
            canvas.override_zl(self.footprint.zl.row0, self.footprint.zl.col0 + dc, self.zl)
            for j, (w, n) in enumerate(zip(self.footprint.noise, self.noises)):
                canvas.override_noise(j, w.row0, w.col0 + dc * 2 ** noise_level(j), n)

    def copies(self, region: Region | None) -> range:
        """Period indices k whose copy (shifted by k * period pixels) can reach ``region``."""
        if not self.period or region is None:
            return range(0, 1)
        L = lattice_of(self)
        a = self.footprint.zl.col0 * L  # footprint span in pixels (generously: the zl window)
        b = (self.footprint.zl.col0 + self.footprint.zl.cols) * L
        lo = (region.x - 64 * L - b) // self.period
        hi = -((-(region.x + region.width + 64 * L - a)) // self.period)
        return range(lo, hi + 1)

    def save(self, path: str | Path) -> Path:
        path = check_writable(Path(path))
        tensors = {"zg": self.zg, "styles": self.styles, "zl": self.zl}
        for j, n in enumerate(self.noises):
            tensors[f"noise.{j}"] = n
        if self.target is not None:
            tensors["target"] = torch.from_numpy(np.ascontiguousarray(self.target, np.uint8))
        if self.mask is not None:
            tensors["mask"] = torch.from_numpy(np.ascontiguousarray(self.mask, np.uint8))
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        r = self.region
        meta = {
            "format": FORMAT, "version": VERSION, "model": self.model_id,
            "region": json.dumps([r.x, r.y, r.width, r.height]),
            "zl_origin": json.dumps([self.footprint.zl.row0, self.footprint.zl.col0]),
            "noise_origins": json.dumps([[w.row0, w.col0] for w in self.footprint.noise]),
            "options": json.dumps(self.options, sort_keys=True),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "source": self.source,
            "period": json.dumps(self.period),
        }
        return save_safetensors(path, tensors, meta)


def lattice_of(lat: "Latents") -> int:
    """Pixels per latent cell, from the footprint (the last noise lattice is 2^K per cell)."""
    return 2 ** (len(lat.noises) // 2)


def check_latents_output(path: str | Path) -> Path:
    """Validate a latents output path before any work (.safetensors, writable folder)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise UserError(f"latents files end in .safetensors, got {path.name}")
    return check_writable(path)


def load_latents(path: str | Path, model=None) -> Latents:
    """Read a latents file; with ``model``, check it was inverted with that model (UserError if not)."""
    from safetensors import safe_open

    path = check_input_file(path, "latents file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:
        raise UserError(f"{path} is not a readable latents file (corrupt or not safetensors)") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not an infinitygan latents file (format={shown(meta.get('format'))})")
    try:
        x, y, w, h = (int(v) for v in json.loads(meta["region"]))
        region = Region(x, y, w, h)
        zl_origin = [int(v) for v in json.loads(meta["zl_origin"])]
        noise_origins = [[int(a) for a in o] for o in json.loads(meta["noise_origins"])]
        zg, styles, zl = tensors["zg"].float(), tensors["styles"].float(), tensors["zl"].float()
        noises = [tensors[f"noise.{j}"].float() for j in range(len(noise_origins))]
        options = json.loads(meta.get("options", "{}"))
        period = json.loads(meta.get("period", "null"))
        metrics = json.loads(meta.get("metrics", "{}"))
    except (KeyError, ValueError, TypeError, UserError):
        raise UserError(f"{path}: corrupt latents file (missing or malformed entries)") from None
    fp = Footprint(Window(zl_origin[0], zl_origin[1], zl.shape[-2], zl.shape[-1]),
                   tuple(Window(o[0], o[1], n.shape[-2], n.shape[-1]) for o, n in zip(noise_origins, noises)))
    target = tensors["target"].numpy() if "target" in tensors else None
    mask = tensors["mask"].numpy() if "mask" in tensors else None
    lat = Latents(zg, styles, zl, noises, fp, region, meta.get("model", ""), target, mask, options, metrics,
                  meta.get("source", ""), period)
    if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period <= 0
                               or period % lattice_of(lat) or period // lattice_of(lat) < zl.shape[-1]
                               or period > 2 ** 31):
        raise UserError(f"{path}: corrupt latents file (its cyclic period {shown(period)} is not a positive multiple of "
                        f"{lattice_of(lat)} pixels that holds the image)")
    if model is not None:
        check_latents_fit(lat, model, path)
    return lat


def check_latents_fit(lat: Latents, model, path: str | Path = "latents") -> None:
    """UserError unless the latents were inverted with ``model`` and cover their region's footprint."""
    if lat.model_id != model_identity(model):
        raise UserError(f"{path} was inverted with another model (model id {lat.model_id or '?'}, "
                        f"this one {model_identity(model)}): invert again with this model")
    g = model.config.generator
    fp = footprint(model.generator.geometry, lat.region)
    ok = (lat.zg.shape == (g.zg_dim,) and lat.styles.shape == (g.n_styles, g.style_dim)
          and lat.zl.shape[0] == g.zl_dim and fp == lat.footprint
          and all(n.dim() == 3 and n.shape[0] == 1 for n in lat.noises))
    if not ok:
        raise UserError(f"{path}: latents do not match the model's sizes or the image's footprint (corrupt file?)")
    if lat.target is not None and lat.target.shape != (lat.region.height, lat.region.width, 3):
        raise UserError(f"{path}: stored image does not match its region (corrupt file?)")
    finite = all(torch.isfinite(t).all() for t in [lat.zg, lat.styles, lat.zl, *lat.noises])
    if not finite:
        raise UserError(f"{path}: latents hold NaN or infinite values (corrupt file?)")
