"""The options of GAN inversion (paper Appendix K defaults), checked on construction. No torch
here: the command line reads its defaults at start-up."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import UserError

#: most optimisation steps of one inversion (the paper uses 1,000-3,000)
MAX_STEPS = 1_000_000
#: most samples of the Gaussianized-W statistics (10,000 by default; memory grows with them)
MAX_W_SAMPLES = 1_000_000


@dataclass
class InversionConfig:
    """Options of the inversion (paper Appendix K values by default)."""

    steps: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_noise: float = 0.05          # initial annealed noise on W+, times the spread of w
    w_noise_ramp: float = 0.75     # fraction of the steps over which it decays to 0
    pixel_weight: float = 10.0
    perceptual_weight: float = 10.0
    w_prior_weight: float = 0.01
    zg_prior_weight: float = 10.0
    zl_prior_weight: float = 10.0
    noise_reg_weight: float = 1000.0
    w_samples: int = 10_000        # samples for the Gaussianized-W statistics
    seed: int = 0

    def __post_init__(self):
        for k, v in asdict(self).items():
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"--{k.replace('_', '-')} must be a finite number, got {v}")
        if not 0 <= self.steps <= MAX_STEPS:
            raise UserError(f"--steps must be in 0..{MAX_STEPS:,}, got {self.steps}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 2 <= self.w_samples <= MAX_W_SAMPLES:
            raise UserError(f"--w-samples must be in 2..{MAX_W_SAMPLES:,}, got {self.w_samples}")
        for k, v in asdict(self).items():
            if (k.endswith("_weight") or k.startswith("w_noise")) and v < 0:
                raise UserError(f"--{k.replace('_', '-')} must be >= 0, got {v}")
