"""``infinitygan info``: a JSON summary of a model file, a training checkpoint, a run directory or,
with no argument, the bundled model."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import UserError


def _param_count(state, prefix: str) -> int:
    return int(sum(v.numel() for k, v in state.items() if k.startswith(prefix)))


def describe(target: str | Path | None = None) -> dict:
    """The summary of ``target`` (None: the bundled model)."""
    from .bundled import bundled_model_path
    from .io import runs

    bundled = target is None
    target = bundled_model_path() if bundled else Path(target)
    if not target.exists():
        raise UserError(f"not found: {target}")
    path, state, cfg, meta = runs.load_model_or_run(target)
    from .api import checked_generator

    checked_generator(path, runs.generator_state(state, meta), cfg)  # what generate would refuse
    out = {"path": str(path), "kind": meta.get("kind", "model"), "preset": cfg.name, "config": cfg.to_dict()}
    if bundled:
        out["bundled"] = True
    if runs.is_training_checkpoint(meta):
        out["parameters"] = {"generator": _param_count(state, runs.G),
                             "discriminator": _param_count(state, runs.D)}
        out["iteration"] = int(meta.get("iteration", 0))
        out["images_seen"] = int(meta.get("images_seen", 0))
        if target.is_dir():
            out["run"] = str(target)
        if "progress" in meta:
            out["progress"] = json.loads(meta["progress"])
    else:
        out["parameters"] = {"generator": _param_count(state, "")}
    return out


@click.command("info")
@click.argument("target", required=False, type=click.Path())
def info_cmd(target):
    """Print a JSON summary of a model file, training checkpoint or run directory (default: the
    bundled model)."""
    click.echo(json.dumps(describe(target)))


def register(cli: click.Group) -> None:
    cli.add_command(info_cmd)
