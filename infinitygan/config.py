"""Typed configuration: dataclasses with YAML presets (``infinitygan/configs/*.yaml``).

A ``ModelConfig`` fully describes a model (generator, discriminator, coordinates) and how it
is trained. Presets: ``paper-101`` (the paper's main model), ``paper-389`` (the high-resolution
model), ``tiny`` (same topology, small widths), plus the ablation baselines.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class CoordConfig:
    """Coordinate system of the structure synthesizer (paper Section 3.2 and Table 4).

    system: ``scenery`` (tanh vertical, periodic horizontal), ``texture`` (periodic on both
    axes) or ``object`` (constant). ``vertical_step`` is the pre-tanh distance between two
    latent rows (0.3 in the authors' code); ``period`` the horizontal (and, for texture,
    vertical) period in latent cells (139 in the authors' code, about 4x the GS window).
    """

    system: str = "scenery"
    vertical_step: float = 0.3
    period: int = 139
    train_vertical_positions: int = 10  # V: vertical window starts sampled in training

    def __post_init__(self):
        if self.system not in ("scenery", "texture", "object"):
            raise UserError(f"unknown coordinate system {self.system!r} (scenery, texture, object)")
        if self.period < 2:
            raise UserError("coordinate period must be >= 2 latent cells")

    @property
    def channels(self) -> int:
        return 4 if self.system == "texture" else 3


@dataclass
class GeneratorConfig:
    """Sizes of the generator. ``ts_channels`` has one entry per GT conv (2 * n_up)."""

    arch: str = "infinitygan"  # infinitygan | stylegan2-nci | stylegan2-nci-pfg (training baselines)
    zg_dim: int = 512
    zl_dim: int = 256
    style_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    gs_layers: int = 4
    gs_kernel: int = 7
    gs_channels: int = 256
    n_up: int = 4
    ts_channels: list[int] = field(default_factory=lambda: [512] * 8)
    ts_input: int = 11  # zS cells of a training patch
    coords: CoordConfig = field(default_factory=CoordConfig)

    def __post_init__(self):
        if isinstance(self.coords, dict):
            self.coords = _from_dict(CoordConfig, self.coords, "generator.coords")
        if len(self.ts_channels) != 2 * self.n_up:
            raise UserError(f"ts_channels needs {2 * self.n_up} entries (2 per upsampling stage)")
        if self.gs_kernel % 2 == 0:
            raise UserError("gs_kernel must be odd")

    @property
    def n_styles(self) -> int:
        return 2 * self.n_up + 1

    @property
    def patch_size(self) -> int:
        """Output size of a training patch: 2^K n - 5 (2^K - 1) (2^K n for the zero-padded baseline)."""
        k = 2 ** self.n_up
        if self.arch == "stylegan2-nci":
            return k * self.ts_input
        return k * self.ts_input - 5 * (k - 1)


@dataclass
class DiscriminatorConfig:
    """StyleGAN2 residual discriminator (zero padding) with the vertical-coordinate head.

    channels[0] is the FromRGB width; channels[i] (i >= 1) the output of residual block i.
    """

    channels: list[int] = field(default_factory=lambda: [256, 512, 512, 512, 512, 512])
    mbstd_group: int = 4
    aux_outputs: int = 3


@dataclass
class TrainingConfig:
    """Training hyper-parameters (paper Section 4 and the authors' released configuration)."""

    batch_size: int = 16
    lr: float = 0.002
    r1_gamma: float = 10.0
    r1_every: int = 16
    pl_every: int = 4
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_decay: float = 0.5 ** (32 / 10000)  # G EMA per iteration (~0.99778, the authors' value)
    aux_weight: float = 1.0
    diversity_weight: float = 1.0
    iterations: int = 800_000
    full_size: int = 197
    pre_resize: int | None = 128
    checkpoint_every: int = 1000
    sample_every: int = 1000
    log_every: int = 50

    def __post_init__(self):
        for name in ("batch_size", "iterations", "checkpoint_every", "sample_every", "log_every", "full_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"training.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class ModelConfig:
    name: str = "paper-101"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self):
        if isinstance(self.generator, dict):
            self.generator = _from_dict(GeneratorConfig, self.generator, "generator")
        if isinstance(self.discriminator, dict):
            self.discriminator = _from_dict(DiscriminatorConfig, self.discriminator, "discriminator")
        if isinstance(self.training, dict):
            self.training = _from_dict(TrainingConfig, self.training, "training")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_training(self, **changes) -> "ModelConfig":
        """A copy with some training fields changed (validated), e.g. batch_size, iterations."""
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, d, "config")


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return cls(**d)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A preset name (``tiny``, ``paper-101``, ...) or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(f"unknown preset {str(name_or_path)!r} (choose from: {', '.join(list_presets())})")
    elif not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    data = data or {}
    data.setdefault("name", path.stem)
    try:
        return ModelConfig.from_dict(data)
    except TypeError as e:
        raise UserError(f"{path}: {e}") from None
