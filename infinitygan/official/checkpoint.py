"""The authors' checkpoint format <-> ours.

Their ``train.py`` saves ``torch.save({'iter', 'best_fid', 'g', 'd', 'g_ema', 'g_optim', 'd_optim',
'mean_path_lengths'})``; ``g_ema`` holds the key families
(``structure_synthesizer.implicit_model.conv_stack.{i}.conv.conv.*``,
``texture_synthesizer.{mapping,convs,to_rgbs}.*``). We load it with ``weights_only=True``
(tensors, containers and numpy scalars only), infer every width from the tensors and rename.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..config import CoordConfig, DiscriminatorConfig, GeneratorConfig, ModelConfig
from ..errors import UserError
from ..discriminator import Discriminator
from ..generator import Generator
from ..io.checkpoint import load_pickled_tensors
from ..io.images import check_input_file
from ..nn import blur_kernel_121

SS = "structure_synthesizer.implicit_model.conv_stack"
TS = "texture_synthesizer"
# present in their files, unused by their forward pass
_IGNORED = re.compile(rf"^{TS}\.(const_z\.input|noises\.noise_\d+|convs\.\d+\.conv\.blur\.kernel|"
                      rf"to_rgbs\.\d+\.upsample\.kernel)$")


def _numpy_safe_globals() -> list:
    """The only non-tensor globals their files need: numpy scalars (``best_fid`` is a numpy
    float64) and the numeric dtypes that describe them. None of them can run code."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed = [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
                 "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            allowed.append(getattr(dtypes, name))
    return allowed


def _refusal(path: Path, e: Exception) -> UserError:
    """One line for a file torch.load(weights_only=True) would not load."""
    import pickle

    text = str(e)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(e, pickle.UnpicklingError) and m:
        return UserError(f"refused {path}: it contains objects other than tensors and numbers ({m.group(1)}) "
                         "that could run arbitrary code when loaded, so it was not loaded")
    if isinstance(e, pickle.UnpicklingError):
        return UserError(f"refused {path}: not a plain PyTorch checkpoint (its pickle holds unsupported "
                         "instructions), so it was not loaded")
    first = text.strip().splitlines()[0] if text.strip() else ""
    detail = f": {first}" if re.search(r"[A-Za-z]{3}", first) and len(first) < 160 else ""  # not a bare number
    return UserError(f"cannot read {path} as a PyTorch checkpoint (truncated or another format){detail}")


def safe_load(path: str | Path):
    """The object an authors' checkpoint file holds, loaded with ``weights_only=True`` and the
    numpy-scalar allowlist: a file holding anything that could run code, a truncated file or
    another format is refused with one line (UserError)."""
    path = check_input_file(path, "checkpoint")
    try:
        return load_pickled_tensors(path, _numpy_safe_globals())
    except Exception as e:  # refused globals, truncated files, other formats
        raise _refusal(path, e) from None


def read_official_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(``g_ema`` state dict, what else the file held) of an authors' checkpoint.

    Their ``train.py`` saves ``{"iter", "best_fid", "g", "d", "g_ema", "g_optim", "d_optim",
    "mean_path_lengths"}`` (``best_fid`` a numpy float64); a bare ``g_ema`` state dict is
    accepted too. Loaded with ``weights_only=True`` and an allowlist of numpy scalar types, so
    a file holding anything that could run code is refused. The second value is
    ``{"keys": [top-level keys], "iter": int | None, "best_fid": float | None}``.
    """
    path = Path(path)
    obj = safe_load(path)
    info: dict = {"keys": [], "iter": None, "best_fid": None}
    if isinstance(obj, dict) and "g_ema" in obj:
        info["keys"] = sorted(str(k) for k in obj)
        for k, cast in (("iter", int), ("best_fid", float)):
            try:
                info[k] = cast(obj[k]) if k in obj else None
            except (TypeError, ValueError):
                info[k] = None
        obj = obj["g_ema"]
    if not isinstance(obj, dict) or not any(str(k).startswith(TS) for k in obj):
        raise UserError(f"{path} is not an InfinityGAN checkpoint of the authors' code (no 'g_ema' generator)")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: the generator state holds non-tensor entries")
    bad = [str(k) for k, v in obj.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # refused here: `info` and `generate` would refuse the converted file
        raise UserError(f"{path}: {len(bad)} generator tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                        "the model is unusable")
    return obj, info


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``g_ema`` state dict of an authors' checkpoint (or of a bare state dict)."""
    return read_official_checkpoint(path)[0]


def _count(state, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_config(state: dict[str, torch.Tensor], name: str = "official") -> ModelConfig:
    """Generator sizes from the tensors of an authors' ``g_ema`` state dict."""
    try:
        n_map = _count(state, rf"^{TS}\.mapping\.(\d+)\.weight$")
        n_ss = _count(state, rf"^{SS}\.(\d+)\.conv\.conv\.weight$")
        n_conv = _count(state, rf"^{TS}\.convs\.(\d+)\.conv\.weight$")
        m1 = state[f"{TS}.mapping.1.weight"]
        ss0 = state[f"{SS}.0.conv.conv.weight"]  # (1, out, in, k, k)
        gs_ch, in0, k = ss0.shape[1], ss0.shape[2], ss0.shape[-1]
        if n_ss > 1:
            cc = state[f"{SS}.1.conv.conv.weight"].shape[2] - gs_ch
        else:
            cc = 3
        ts_channels = [int(state[f"{TS}.convs.{i}.conv.weight"].shape[1]) for i in range(n_conv)]
    except KeyError as e:
        raise UserError(f"not an InfinityGAN generator state: missing {e.args[0]}") from None
    if n_conv % 2 or n_conv == 0:
        raise UserError(f"unexpected number of texture-synthesizer convs: {n_conv}")
    if cc not in (3, 4):
        raise UserError(f"unexpected number of coordinate channels: {cc}")
    gen = GeneratorConfig(
        zg_dim=int(m1.shape[1]), zl_dim=int(in0 - cc), style_dim=int(m1.shape[0]), mapping_layers=n_map,
        gs_layers=n_ss, gs_kernel=int(k), gs_channels=int(gs_ch), n_up=n_conv // 2, ts_channels=ts_channels,
        ts_input=11, coords=CoordConfig(system="scenery" if cc == 3 else "texture"),
    )
    return ModelConfig(name=name, generator=gen)


_G_RENAMES = (
    (re.compile(rf"^{SS}\.(\d+)\.conv\.(conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias|activate\.bias)$"),
     "structure.layers.{0}.{1}"),
    (re.compile(rf"^{TS}\.mapping\.(\d+)\.(weight|bias)$"), "mapping.net.{0}.{1}"),
    (re.compile(rf"^{TS}\.convs\.(\d+)\.(conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias|"
                r"noise\.weight|activate\.bias)$"), "texture.convs.{0}.{1}"),
    (re.compile(rf"^{TS}\.to_rgbs\.(\d+)\.(bias|conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias)$"),
     "texture.to_rgbs.{0}.{1}"),
)


def convert_g_key(key: str) -> str | None:
    """Their generator key -> ours; None for what our generator does not hold (unused buffers,
    the unused constant input); UserError for an unknown key. Their modulated-conv weights carry a
    leading batch axis of 1 (``(1, out, in, k, k)``) that ours drop (``squeeze_leading``)."""
    if _IGNORED.match(key):
        return None
    for rx, fmt in _G_RENAMES:
        m = rx.match(key)
        if m:
            return fmt.format(*m.groups())
    raise UserError(f"unexpected key in the authors' checkpoint: {key}")


def squeeze_leading(key: str, t: torch.Tensor) -> torch.Tensor:
    """Their ``conv.weight`` (1, out, in, k, k) -> ours (out, in, k, k); other tensors unchanged."""
    return t[0] if key.endswith("conv.weight") and t.dim() == 5 else t


def convert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the authors' g_ema keys to ours. Raises UserError on unknown keys."""
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, t in state.items():
        if _IGNORED.match(key):
            if key.endswith("kernel") and t.shape == (3, 3) and not torch.allclose(t.float(), blur_kernel_121()):
                warnings.warn(f"{key} differs from the [1,2,1] kernel this implementation uses")
            continue
        try:
            new = convert_g_key(key)
        except UserError:
            unexpected.append(key)
            continue
        out[new] = squeeze_leading(key, t)
    if unexpected:
        raise UserError(f"unexpected key(s) in the authors' checkpoint: {', '.join(unexpected[:5])}"
                        + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
    return out


# ------------------------------------------------------------------ the discriminator
#: buffers of their discriminator (the [1,3,3,1] blur kernels before every stride-2 conv)
_D_BUFFER = re.compile(r"^convs\.\d+\.(conv2|skip)\.0\.kernel$")
#: buffers of their generator (not parameters: they take no optimizer slot)
_G_BUFFER = re.compile(rf"^{TS}\.(noises\.noise_\d+|convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel)$")


def official_parameter_names(state: dict[str, torch.Tensor], net: str) -> list[str]:
    """The names of their ``net`` ("g" or "d") parameters in ``parameters()`` order: the state-dict
    order without the buffers. Their Adam states index parameters in this order."""
    rx = _G_BUFFER if net == "g" else _D_BUFFER
    return [k for k in state if not rx.match(k)]


def convert_d_key(key: str) -> str | None:
    """Their discriminator key -> ours (None for the blur-kernel buffers).

    Theirs: ``convs.0`` FromRGB, ``convs.{i}`` residual block i - 1, ``final_conv``,
    ``final_linear`` (real/fake head), ``coord_linear`` (coordinate head). Ours: ``from_rgb``,
    ``blocks.{i}``, ``final_conv``, ``head``, ``aux_head``; every sub-layer index is the same.
    """
    if _D_BUFFER.match(key):
        return None
    m = re.match(r"^convs\.(\d+)\.(.+)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        return f"from_rgb.{rest}" if i == 0 else f"blocks.{i - 1}.{rest}"
    for theirs, ours in (("final_conv.", "final_conv."), ("final_linear.", "head."), ("coord_linear.", "aux_head.")):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    raise UserError(f"unexpected key in the authors' discriminator: {key}")


def _check_d_blur(state: dict[str, torch.Tensor]) -> None:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    k = k / k.sum()
    for key, t in state.items():
        if _D_BUFFER.match(key) and (t.shape != (4, 4) or not torch.allclose(t.double(), k.double(), atol=1e-6)):
            raise UserError(f"{key}: the authors' discriminator blur differs from [1,3,3,1] (this one is not supported)")


def infer_discriminator_config(state: dict[str, torch.Tensor]) -> DiscriminatorConfig:
    """Discriminator widths from their ``d`` state dict (FromRGB, blocks, coordinate head)."""
    try:
        n_blocks = _count(state, r"^convs\.(\d+)\.conv1\.0\.weight$")
        channels = [int(state["convs.0.0.weight"].shape[0])]
        channels += [int(state[f"convs.{i}.conv2.1.weight"].shape[0]) for i in range(1, n_blocks + 1)]
        aux = int(state["coord_linear.1.weight"].shape[0])
    except KeyError as e:
        raise UserError(f"not an InfinityGAN discriminator state: missing {e.args[0]}") from None
    return DiscriminatorConfig(channels=channels, aux_outputs=aux)


def convert_d_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename their discriminator state to ours (blur kernels checked and dropped)."""
    _check_d_blur(state)
    return {new: t for k, t in state.items() if (new := convert_d_key(k)) is not None}


def discriminator_from_official_state(state: dict[str, torch.Tensor], patch_size: int) -> Discriminator:
    """Our discriminator (float32, train mode) with their weights. Their minibatch-stddev group is
    the whole per-GPU batch; ours is ``DiscriminatorConfig.mbstd_group`` (docs/training.md)."""
    cfg = infer_discriminator_config(state)
    d = Discriminator(cfg, patch_size)
    ours = convert_d_state(state)
    _load_strict(d, ours, "discriminator")
    return d


def _load_strict(module: torch.nn.Module, ours: dict[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(ours))
    extra = sorted(set(ours) - set(own))
    if missing or extra:
        k = (missing or extra)[0]
        raise UserError(f"the authors' {what} does not match this architecture "
                        f"({len(missing)} missing, {len(extra)} unexpected tensor(s), e.g. {k})")
    bad = [k for k in ours if ours[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise UserError(f"shape mismatch for {what} {k}: checkpoint {tuple(ours[k].shape)} vs model {tuple(own[k].shape)}")
    module.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)


def load_official(path: str | Path) -> tuple[Generator, ModelConfig]:
    """Build our generator from an authors' checkpoint (float32, eval mode)."""
    return load_official_with_info(path)[:2]


def load_official_with_info(path: str | Path) -> tuple[Generator, ModelConfig, dict]:
    """``load_official`` plus what else the file held (see ``read_official_checkpoint``)."""
    state, info = read_official_checkpoint(path)
    cfg = infer_config(state, name=Path(path).stem)
    return generator_from_official_state(state, cfg), cfg, info


def generator_from_official_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> Generator:
    g = Generator(cfg.generator)
    ours = convert_state(state)
    own = g.state_dict()
    missing = sorted(set(own) - set(ours))
    if missing:
        raise UserError(f"the authors' checkpoint lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    bad = [k for k in ours if k in own and ours[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise UserError(f"shape mismatch for {k}: checkpoint {tuple(ours[k].shape)} vs model {tuple(own[k].shape)}")
    g.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return g.eval()
