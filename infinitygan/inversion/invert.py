"""GAN inversion of InfinityGAN (paper Appendix K): recover the latents that reproduce an image
at a given place of the infinite canvas.

Optimised variables (all of them, so the image's pixels depend on nothing else):
  zg (1, zg_dim); zl over the image's footprint incl. the GS margin (zl_dim, h, w); W+ as
  Gaussianized styles v (n_styles, style_dim) with w = leaky_relu(v, 0.2); the noise of every GT
  conv over the footprint (1, h_j, w_j).
Objective: pixel MSE over the known pixels (x10) + LPIPS (x10, when its weights exist)
  + Mahalanobis prior of v under the Gaussianized-W statistics (x0.01) + mean squares of zg and
  zl (x10 each) + StyleGAN2 noise regularisation (x1000); noise renormalised after every step.
Optimiser: Adam, lr 0.1 with the StyleGAN2 projector's schedule (cosine ramp-up over the first
  5% and ramp-down over the last 25%) and its annealed latent noise (Gaussian noise added to
  W+ of std w_std * 0.05 * (1 - t / 0.75)^2), batch 1. Initial values: zg, zl and noise of the
  canvas of ``seed``, v at the Gaussianized mean. Deterministic for a given seed.
"""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch

from ..errors import UserError
from ..latents import Canvas
from .config import InversionConfig
from ..synthesis import Region, Synthesizer
from .footprint import footprint
from .latents_file import Latents, model_identity
from .priors import GaussianizedW, WPrior, degaussianize, noise_regularization, renormalize_noises


def learning_rate(cfg: InversionConfig, step: int) -> float:
    """The StyleGAN2 projector's schedule: cosine ramp-up, flat, cosine ramp-down to 0."""
    t = step / max(cfg.steps, 1)
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown) if cfg.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup > 0:
        ramp *= min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, mask=None) -> float:
    """PSNR (dB) of two [-1, 1] images (H, W, 3) after clamping, over the mask's pixels."""
    a = torch.as_tensor(np.asarray(a, np.float32)).clamp(-1, 1)
    b = torch.as_tensor(np.asarray(b, np.float32)).clamp(-1, 1)
    d = (a - b) ** 2 / 4.0  # [0, 1] scale
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, np.float32))[..., None].expand_as(d)
        mse = float((d * m).sum() / m.sum().clamp_min(1))
    else:
        mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def check_period(period: int | None, fp, lattice: int) -> dict:
    """Canvas keyword arguments of a cyclic inversion ({} for none); UserError when the period is
    not a multiple of the lattice or too short to hold the image's footprint once."""
    if period is None:
        return {}
    if period <= 0 or period % lattice:
        raise UserError(f"the cyclic period must be a positive multiple of {lattice} pixels, got {period}")
    if period // lattice < fp.zl.cols:
        raise UserError(f"the cyclic period ({period} px) is shorter than the image's footprint "
                        f"({fp.zl.cols * lattice} px): use a longer period")
    return {"period": period // lattice}


def render_region(synth: Synthesizer, canvas: Canvas, region: Region, styles: torch.Tensor) -> torch.Tensor:
    """Differentiable pixels (3, H, W) of ``region`` with W+ ``styles`` (1, n_styles, style_dim)."""
    return synth.render_tensor(canvas, region, styles=styles)


class Inversion:
    """Inverts images with one model. ``perceptual``: an LPIPS module or None."""

    def __init__(self, model, cfg: InversionConfig | None = None, perceptual=None, device="cpu"):
        self.model = model
        self.cfg = cfg or InversionConfig()
        self.synth = Synthesizer(model.generator, device)
        self.device = self.synth.device
        self.perceptual = perceptual.to(self.device) if perceptual is not None else None
        self._stats: GaussianizedW | None = None
        self._period: dict = {}

    @property
    def stats(self) -> GaussianizedW:
        if self._stats is None:
            self._stats = GaussianizedW.estimate(self.synth.generator, self.cfg.w_samples, seed=self.cfg.seed)
        return self._stats

    def __call__(self, target: np.ndarray, region: Region, mask: np.ndarray | None = None,
                 progress: bool = False, source: str = "", callback=None, period: int | None = None) -> Latents:
        """Latents reproducing ``target`` (H, W, 3) in [-1, 1] at ``region`` (same size).

        mask: (H, W), nonzero where pixels are known (default: all).
        callback(step, loss_dict): called after every step (tests, logging).
        period: invert on a cyclic canvas of this horizontal period (pixels; its coordinates),
          for cyclic panoramas from the image.
        """
        cfg, dev = self.cfg, self.device
        H, W = target.shape[:2]
        if (region.height, region.width) != (H, W):
            raise ValueError(f"region {region} does not match the image size {W}x{H}")
        gen = self.synth.generator
        g = self.model.config.generator
        fp = footprint(gen.geometry, region)
        self._period = check_period(period, fp, gen.geometry.lattice)
        known = np.ones((H, W), np.uint8) if mask is None else (np.asarray(mask) > 0).astype(np.uint8)
        x = torch.as_tensor(np.ascontiguousarray(target, np.float32)).permute(2, 0, 1).to(dev)  # (3, H, W)
        m = torch.as_tensor(known, dtype=torch.float32, device=dev)[None]  # (1, H, W)
        n_known = m.sum() * 3

        start = Canvas(cfg.seed, g.zg_dim, g.zl_dim)
        zg = start.zg(device=dev).clone().requires_grad_(True)  # (1, zg_dim)
        zl = start.zl(fp.zl.row0, fp.zl.rows, fp.zl.col0, fp.zl.cols, device=dev).clone().requires_grad_(True)
        noises = [start.noise(j, w.row0, w.rows, w.col0, w.cols, device=dev).clone().requires_grad_(True)
                  for j, w in enumerate(fp.noise)]
        stats = self.stats
        prior = WPrior(stats, dev)
        v = stats.mean.to(dev, torch.float32).expand(g.n_styles, -1).clone().requires_grad_(True)
        opt = torch.optim.Adam([zg, zl, v, *noises], lr=cfg.lr, betas=(0.9, 0.999))
        rng = torch.Generator().manual_seed(cfg.seed + 1)

        params = list(gen.parameters())
        was = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, unit="step", desc="inversion", leave=False)
        try:
            for step in range(cfg.steps):
                lr = learning_rate(cfg, step)
                for group in opt.param_groups:
                    group["lr"] = lr
                t = step / max(cfg.steps, 1)
                strength = stats.w_std * cfg.w_noise * max(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2 \
                    if cfg.w_noise_ramp > 0 else 0.0
                w = degaussianize(v)
                if strength > 0:
                    w = w + strength * torch.randn(w.shape, generator=rng).to(dev)
                losses = self._losses(region, x, m, n_known, fp, zg, zl, v, w, noises, prior)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                renormalize_noises(noises)
                if bar is not None:
                    bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}", mse=f"{float(losses['pixel'].detach()):.5f}",
                                    refresh=False)
                    bar.update(1)
                if callback is not None:
                    callback(step, {k: float(v_.detach()) for k, v_ in losses.items()})
        finally:
            if bar is not None:
                bar.close()
            for p, r in zip(params, was):
                p.requires_grad_(r)

        lat = Latents(zg.detach()[0].cpu(), degaussianize(v.detach()).cpu(), zl.detach().cpu(),
                      [n.detach().cpu() for n in noises], fp, region, model_identity(self.model),
                      target=np.clip(np.rint((target + 1.0) * 127.5), 0, 255).astype(np.uint8),
                      mask=known, options={**asdict(cfg), "perceptual": self.perceptual is not None},
                      source=source, period=period)
        with torch.no_grad():
            out = self.render(lat, cfg.seed)
        lat.metrics = {"psnr": round(psnr(out, target, known), 3)}
        if self.perceptual is not None:
            with torch.no_grad():
                a = torch.as_tensor(out).permute(2, 0, 1)[None].to(dev)
                b = (x * m + a[0] * (1 - m))[None]
                lat.metrics["lpips"] = round(float(self.perceptual(a, b).mean()), 4)
        return lat

    def _losses(self, region, x, m, n_known, fp, zg, zl, v, w, noises, prior) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        g = self.model.config.generator
        canvas = Canvas(cfg.seed, g.zg_dim, g.zl_dim, global_latent=zg, **self._period)
        canvas.override_zl(fp.zl.row0, fp.zl.col0, zl)
        for j, (win, n) in enumerate(zip(fp.noise, noises)):
            canvas.override_noise(j, win.row0, win.col0, n)
        img = render_region(self.synth, canvas, region, w[None])  # (3, H, W)
        out = {"pixel": ((img - x) ** 2 * m).sum() / n_known}
        total = cfg.pixel_weight * out["pixel"]
        if self.perceptual is not None and cfg.perceptual_weight > 0:
            ref = x * m + img.detach() * (1 - m)  # unknown pixels agree with the render
            out["perceptual"] = self.perceptual(img[None], ref[None]).mean()
            total = total + cfg.perceptual_weight * out["perceptual"]
        out["w_prior"] = prior(v)
        out["zg_prior"] = zg.square().mean()
        out["zl_prior"] = zl.square().mean()
        out["noise_reg"] = noise_regularization(noises)
        total = (total + cfg.w_prior_weight * out["w_prior"] + cfg.zg_prior_weight * out["zg_prior"]
                 + cfg.zl_prior_weight * out["zl_prior"] + cfg.noise_reg_weight * out["noise_reg"])
        out["total"] = total
        return out

    def render(self, lat: Latents, seed: int) -> np.ndarray:
        """The latents' own region rendered on the canvas of ``seed``: float32 (H, W, 3)."""
        img = render_region(self.synth, lat.canvas(seed), lat.region, lat.styles[None].to(self.device))
        return img.permute(1, 2, 0).detach().cpu().numpy()
