"""Continue training from the authors' whole training checkpoint (``train --init-from FILE``).

Their ``train.py`` saves ``{"iter", "best_fid", "g", "d", "g_ema", "g_optim", "d_optim",
"mean_path_lengths"}``: G, D and the EMA of G as state dicts, both Adam optimizers as PyTorch
state dicts (per-parameter state indexed by the position of the parameter in ``parameters()``
order), the iteration and the running mean of the path lengths (a list of one tensor). This
module turns it into the tensors and metadata of one of our training checkpoints
(``io.runs``), which ``state.restore`` loads like any other: the architecture is read from the
tensors (``official.infer_config`` / ``infer_discriminator_config``), the training
hyper-parameters come from the config the user chose.

Loading is ``official.safe_load`` (``weights_only=True`` with the numpy-scalar allowlist): a file
holding pickled code, a truncated file or another format is refused in one line, before anything
runs or is written.

Unit conversions:

* Their path length is sqrt(mean over the W+ slots AND the style dimension D of grad^2); ours is
  StyleGAN2's sqrt(mean over slots of the sum over D), sqrt(D) times larger. Their running mean
  is multiplied by sqrt(D) so that the penalty starts where theirs was (docs/training.md).
* Their modulated-conv weights (and their Adam moments) carry a leading axis of 1, dropped.
* Their generator's unused constant input (``texture_synthesizer.const_z.input``) has an Adam
  slot and no counterpart here: its state is dropped.

Their Adam state must cover every parameter that has a counterpart here, or none (a fresh
optimizer): a partial state is refused in one line. The parameter order their Adam state is
indexed by (``official.official_parameter_names``) is checked in tests/test_official_init.py
against their own listings: the ordered G key listing of ../shared/fixtures/official/ and the
D parameters as their training run recorded them.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from ..config import ModelConfig, TrainingConfig
from ..discriminator import Discriminator
from ..errors import UserError
from ..generator import Generator
from ..io import runs
from ..official import checkpoint as O

#: the entries of a whole training checkpoint of the authors' code
REQUIRED = ("g", "d", "g_ema", "g_optim", "d_optim", "iter")


def _state_dict(obj: dict, key: str, path: Path) -> dict[str, torch.Tensor]:
    sd = obj[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path}: '{key}' is not a state dict of tensors")
    return {str(k): v for k, v in sd.items()}


def _float(x, what: str, path: Path) -> float:
    if isinstance(x, (list, tuple)):
        if not x:
            raise UserError(f"{path}: '{what}' is empty")
        vals = [_float(v, what, path) for v in x]
        return sum(vals) / len(vals)
    try:
        v = float(x.item() if isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{path}: '{what}' is not a number") from None
    if not math.isfinite(v):
        raise UserError(f"{path}: '{what}' is not finite ({v})")
    return v


def _adam_tensors(opt, their_state: dict[str, torch.Tensor], net: str, module: torch.nn.Module,
                  prefix: str, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Their Adam state dict -> ``{prefix}{i}.{exp_avg,exp_avg_sq,step}`` for our parameter i;
    plus their hyper-parameters (lr, betas, eps) for a consistency check."""
    if not isinstance(opt, dict) or "state" not in opt or "param_groups" not in opt:
        raise UserError(f"{path}: '{net}_optim' is not an optimizer state dict")
    groups = opt["param_groups"]
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        raise UserError(f"{path}: '{net}_optim' must have one parameter group")
    names = O.official_parameter_names(their_state, net)
    if len(groups[0].get("params", [])) != len(names):
        raise UserError(f"{path}: '{net}_optim' covers {len(groups[0].get('params', []))} parameters, "
                        f"the '{net}' state has {len(names)}")
    convert = O.convert_g_key if net == "g" else O.convert_d_key
    ours = {n: i for i, (n, _) in enumerate(module.named_parameters())}
    own = dict(module.named_parameters())
    out: dict[str, torch.Tensor] = {}
    state = opt["state"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: '{net}_optim' state is not a mapping")
    for idx, st in state.items():
        try:
            name = names[int(idx)]
        except (IndexError, TypeError, ValueError):
            raise UserError(f"{path}: '{net}_optim' has state for an unknown parameter {idx!r}") from None
        new = convert(name)
        if new is None:
            continue
        if not isinstance(st, dict) or not all(k in st for k in ("step", "exp_avg", "exp_avg_sq")):
            raise UserError(f"{path}: '{net}_optim' state of {name} is not Adam's (step, exp_avg, exp_avg_sq)")
        i = ours[new]
        for k in ("exp_avg", "exp_avg_sq"):
            t = O.squeeze_leading(name, st[k]) if isinstance(st[k], torch.Tensor) else None
            if t is None or t.shape != own[new].shape:
                raise UserError(f"{path}: '{net}_optim' {k} of {name} does not match the parameter's shape")
            out[f"{prefix}{i}.{k}"] = t.detach().float().clone()
        out[f"{prefix}{i}.step"] = torch.tensor(_float(st["step"], f"{net}_optim step", path), dtype=torch.float32)
    _check_complete(out, prefix, ours, net, path)
    g = groups[0]
    return out, {"lr": g.get("lr"), "betas": tuple(g.get("betas", ())), "eps": g.get("eps")}


def _check_complete(out: dict[str, torch.Tensor], prefix: str, ours: dict[str, int], net: str, path: Path) -> None:
    """Adam state for every parameter of ours, or for none (a fresh optimizer, as in a checkpoint
    saved before its first step): a partial state (a truncated or edited file, another model's
    optimizer) is refused rather than silently continued with some moments reset."""
    have = {int(k[len(prefix):].split(".", 1)[0]) for k in out}
    if not have or len(have) == len(ours):
        return
    missing = sorted(n for n, i in ours.items() if i not in have)
    raise UserError(f"{path}: '{net}_optim' holds Adam state for {len(have)} of the {len(ours)} parameters "
                    f"(none for {missing[0]}{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}): "
                    "refusing a partial optimizer state")


def official_training_state(path: str | Path, training: TrainingConfig, name: str | None = None
                            ) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, checkpoint tensors, checkpoint metadata) of an authors' training checkpoint.

    The config's generator and discriminator are read from the file; ``training`` supplies the
    hyper-parameters. The tensors and metadata are those of our training checkpoints
    (``state.checkpoint_tensors``): ``state.restore`` loads them. UserError (one line) for a file
    that is not a whole training checkpoint of the authors' code.
    """
    path = Path(path)
    obj = O.safe_load(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a training checkpoint of the authors' code (not a mapping)")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        what = "a generator alone" if "g_ema" in obj or any(str(k).startswith(O.TS) for k in obj) else "something else"
        raise UserError(f"{path} is not a whole training checkpoint of the authors' code ({what}; missing "
                        f"{', '.join(missing)}): --init-from needs g, d, g_ema, g_optim, d_optim and iter")
    g_sd, d_sd, ema_sd = (_state_dict(obj, k, path) for k in ("g", "d", "g_ema"))
    gen_cfg = O.infer_config(ema_sd).generator
    cfg = ModelConfig(name=name or path.stem, generator=gen_cfg,
                      discriminator=O.infer_discriminator_config(d_sd), training=training)
    G, G_ema = Generator(cfg.generator), Generator(cfg.generator)
    D = Discriminator(cfg.discriminator, cfg.generator.patch_size)
    O._load_strict(G, O.convert_state(g_sd), "generator 'g'")
    O._load_strict(G_ema, O.convert_state(ema_sd), "generator 'g_ema'")
    O._load_strict(D, O.convert_d_state(d_sd), "discriminator 'd'")

    tensors: dict[str, torch.Tensor] = {}
    for prefix, m in ((runs.G, G), (runs.D, D), (runs.G_EMA, G_ema)):
        tensors.update({f"{prefix}{k}": v for k, v in m.state_dict().items()})
    hyper = {}
    for net, sd, m, prefix in (("g", g_sd, G, runs.G_OPTIM), ("d", d_sd, D, runs.D_OPTIM)):
        t, hyper[net] = _adam_tensors(obj[f"{net}_optim"], sd, net, m, prefix, path)
        tensors.update(t)
    _warn_hyper(hyper, training)

    iteration = int(_float(obj["iter"], "iter", path))
    if iteration < 0:
        raise UserError(f"{path}: negative iteration {iteration}")
    pl = obj.get("mean_path_lengths", 0.0)
    tensors[runs.PL_MEAN] = torch.tensor(_float(pl, "mean_path_lengths", path) * math.sqrt(gen_cfg.style_dim),
                                         dtype=torch.float32)
    meta = {"iteration": str(iteration), "images_seen": str(iteration * training.batch_size),
            "progress": "{}", "init_from": str(path)}
    return cfg, tensors, meta


def _warn_hyper(hyper: dict, tc: TrainingConfig) -> None:
    """One warning when their recorded Adam settings differ from the config's (the config wins)."""
    for net, every in (("g", tc.pl_every), ("d", tc.r1_every)):
        h = hyper[net]
        r = every / (every + 1) if every > 0 else 1.0
        want = (tc.lr * r, 0.99 ** r)
        try:
            got = (float(h["lr"]), float(h["betas"][1]))
        except (TypeError, ValueError, IndexError):
            continue
        if any(abs(a - b) > 1e-9 * max(abs(b), 1.0) for a, b in zip(got, want)):
            warnings.warn(f"the checkpoint's {net.upper()} Adam had lr {got[0]:.6g}, beta2 {got[1]:.6g}; "
                          f"training continues with the config's {want[0]:.6g}, {want[1]:.6g}", stacklevel=3)
