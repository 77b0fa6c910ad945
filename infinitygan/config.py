"""Typed configuration: dataclasses with YAML presets (``infinitygan/configs/*.yaml``).

A ``ModelConfig`` fully describes a model (generator, discriminator, coordinates) and how it
is trained. Presets: ``paper-101`` (the paper's main model), ``paper-389`` (the high-resolution
model), ``tiny`` (same topology, small widths), plus the ablation baselines.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError, shown

PRESET_DIR = Path(__file__).parent / "configs"

#: the widest layer a config may ask for (channels, latent sizes)
MAX_WIDTH = 8192


def _check(obj, where: str, ranges: dict[str, tuple]) -> None:
    """Types and ranges of a config's fields: ints are ints (not bools or floats), floats are
    finite numbers, lists of ints hold ints; ``ranges`` maps a field to (lo, hi), inclusive
    (None: open). UserError names the field."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        kind = str(f.type)
        name = f"{where}.{f.name}"
        if kind in ("int", "int | None"):
            if v is None and kind == "int | None":
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise UserError(f"{name} must be an integer, got {shown(v)}")
        elif kind == "float":
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise UserError(f"{name} must be a finite number, got {shown(v)}")
            setattr(obj, f.name, float(v))
            v = float(v)
        elif kind == "list[int]":
            if not isinstance(v, (list, tuple)) or not v or any(
                    isinstance(x, bool) or not isinstance(x, numbers.Integral) or not 1 <= x <= MAX_WIDTH for x in v):
                raise UserError(f"{name} must be a non-empty list of integers in 1..{MAX_WIDTH}, got {shown(v)}")
            setattr(obj, f.name, [int(x) for x in v])
            continue
        elif kind == "str" and not isinstance(v, str):
            raise UserError(f"{name} must be a string, got {shown(v)}")
        if f.name in ranges and v is not None:
            lo, hi = ranges[f.name]
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                span = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
                raise UserError(f"{name} must be in {span}, got {shown(v)}")


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
        _check(self, "generator.coords", {"vertical_step": (1e-6, 1e3), "period": (2, 1 << 20),
                                          "train_vertical_positions": (1, 1 << 16)})
        if self.system not in ("scenery", "texture", "object"):
            raise UserError(f"unknown coordinate system {shown(self.system)} (scenery, texture, object)")

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
        if not isinstance(self.coords, CoordConfig):
            raise UserError("generator.coords must be a mapping")
        _check(self, "generator", {"zg_dim": (1, MAX_WIDTH), "zl_dim": (1, MAX_WIDTH), "style_dim": (1, MAX_WIDTH),
                                   "mapping_layers": (1, 32), "mapping_lr_mul": (1e-6, 1.0), "gs_layers": (0, 32),
                                   "gs_kernel": (1, 31), "gs_channels": (1, MAX_WIDTH), "n_up": (1, 8),
                                   "ts_input": (1, 256)})
        if self.arch not in ("infinitygan", "stylegan2-nci", "stylegan2-nci-pfg"):
            raise UserError(f"generator.arch must be infinitygan, stylegan2-nci or stylegan2-nci-pfg, got {shown(self.arch)}")
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

    def __post_init__(self):
        _check(self, "discriminator", {"mbstd_group": (1, 4096), "aux_outputs": (0, 64)})


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
    # not in the paper (0 = off): weight of the squared difference between the mean colours of two
    # patches of one zg and vertical window at other zl and horizontal phases (docs/training.md,
    # "Colour from the horizontal coordinate")
    colour_consistency_weight: float = 0.0
    iterations: int = 800_000
    full_size: int = 197
    pre_resize: int | None = 128
    checkpoint_every: int = 1000
    sample_every: int = 1000
    log_every: int = 50

    def __post_init__(self):
        big = 10 ** 9
        _check(self, "training", {
            "batch_size": (1, 4096), "lr": (1e-9, 1.0), "r1_gamma": (0.0, 1e6), "r1_every": (1, big),
            "pl_every": (1, big), "pl_weight": (0.0, 1e6), "pl_decay": (0.0, 1.0), "pl_batch_shrink": (1, 4096),
            "style_mixing": (0.0, 1.0), "ema_decay": (0.0, 1.0), "aux_weight": (0.0, 1e6),
            "diversity_weight": (0.0, 1e6), "colour_consistency_weight": (0.0, 1e6), "iterations": (1, big), "full_size": (8, 8192), "pre_resize": (1, 8192),
            "checkpoint_every": (1, big), "sample_every": (1, big), "log_every": (1, big)})


@dataclass
class ModelConfig:
    name: str = "paper-101"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise UserError(f"config name must be a string, got {shown(self.name)}")
        if isinstance(self.generator, dict):
            self.generator = _from_dict(GeneratorConfig, self.generator, "generator")
        if isinstance(self.discriminator, dict):
            self.discriminator = _from_dict(DiscriminatorConfig, self.discriminator, "discriminator")
        if isinstance(self.training, dict):
            self.training = _from_dict(TrainingConfig, self.training, "training")
        for section, kind in (("generator", GeneratorConfig), ("discriminator", DiscriminatorConfig),
                              ("training", TrainingConfig)):
            if not isinstance(getattr(self, section), kind):
                raise UserError(f"{section} must be a mapping of its settings, got {shown(getattr(self, section))}")

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
    unknown = sorted(str(k) for k in set(d) - names)
    if unknown:
        text = ", ".join(unknown)
        raise UserError(f"{where}: unknown key(s) {text if len(text) <= 80 else text[:77] + '...'}")
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
    from .io import safe_yaml

    try:
        data = safe_yaml.load(path.read_text())
    except UserError as e:
        raise UserError(f"cannot parse {path}: {e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot parse {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config is a mapping (name, generator, discriminator, training), "
                        f"got {type(data).__name__}")
    if "generator" not in data:
        raise UserError(f"{path}: no generator section (start from a preset's file: infinitygan/configs/*.yaml)")
    data.setdefault("name", path.stem)
    try:
        return ModelConfig.from_dict(data)
    except TypeError as e:
        raise UserError(f"{path}: {e}") from None
