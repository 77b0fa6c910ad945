"""The authors' checkpoint format <-> ours.

Their ``train.py`` saves ``torch.save({'iter', 'best_fid', 'g', 'd', 'g_ema', 'g_optim', ...})``;
``g_ema`` holds the key families listed in the facts file (``structure_synthesizer.implicit_model
.conv_stack.{i}.conv.conv.*``, ``texture_synthesizer.{mapping,convs,to_rgbs}.*``). We load it with
``weights_only=True`` (plain tensors only), infer every width from the tensors and rename.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from .config import CoordConfig, GeneratorConfig, ModelConfig
from .errors import UserError
from .generator import Generator
from .nn import blur_kernel_121

SS = "structure_synthesizer.implicit_model.conv_stack"
TS = "texture_synthesizer"
# present in their files, unused by their forward pass
_IGNORED = re.compile(rf"^{TS}\.(const_z\.input|noises\.noise_\d+|convs\.\d+\.conv\.blur\.kernel|"
                      rf"to_rgbs\.\d+\.upsample\.kernel)$")


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``g_ema`` state dict of an authors' checkpoint (or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusing non-tensor objects, truncated files, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load {path} as a plain-tensor checkpoint (weights_only): {msg}") from None
    if isinstance(obj, dict) and "g_ema" in obj:
        obj = obj["g_ema"]
    if not isinstance(obj, dict) or not any(str(k).startswith(TS) for k in obj):
        raise UserError(f"{path} is not an InfinityGAN checkpoint of the authors' code (no 'g_ema' generator)")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: the generator state holds non-tensor entries")
    return obj


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


def convert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the authors' g_ema keys to ours. Raises UserError on unknown keys."""
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, t in state.items():
        if _IGNORED.match(key):
            if key.endswith("kernel") and t.shape == (3, 3) and not torch.allclose(t.float(), blur_kernel_121()):
                warnings.warn(f"{key} differs from the [1,2,1] kernel this implementation uses")
            continue
        m = re.match(rf"^{SS}\.(\d+)\.conv\.(conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias|activate\.bias)$", key)
        if m:
            i, rest = m.groups()
            new = f"structure.layers.{i}." + {"conv.weight": "conv.weight", "conv.modulation.weight": "conv.modulation.weight",
                                              "conv.modulation.bias": "conv.modulation.bias",
                                              "activate.bias": "activate.bias"}[rest]
            out[new] = t[0] if rest == "conv.weight" else t
            continue
        m = re.match(rf"^{TS}\.mapping\.(\d+)\.(weight|bias)$", key)
        if m:
            out[f"mapping.net.{m.group(1)}.{m.group(2)}"] = t
            continue
        m = re.match(rf"^{TS}\.convs\.(\d+)\.(conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias|noise\.weight|activate\.bias)$", key)
        if m:
            i, rest = m.groups()
            out[f"texture.convs.{i}.{rest}"] = t[0] if rest == "conv.weight" else t
            continue
        m = re.match(rf"^{TS}\.to_rgbs\.(\d+)\.(bias|conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias)$", key)
        if m:
            i, rest = m.groups()
            out[f"texture.to_rgbs.{i}.{rest}"] = t[0] if rest == "conv.weight" else t
            continue
        unexpected.append(key)
    if unexpected:
        raise UserError(f"unexpected key(s) in the authors' checkpoint: {', '.join(unexpected[:5])}"
                        + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
    return out


def load_official(path: str | Path) -> tuple[Generator, ModelConfig]:
    """Build our generator from an authors' checkpoint (float32, eval mode)."""
    state = read_official_state(path)
    cfg = infer_config(state, name=Path(path).stem)
    return generator_from_official_state(state, cfg), cfg


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
