"""The ``train`` subcommand of the ``infinitygan`` CLI (``prepare`` is the data room's).

``infinitygan.cli`` calls :func:`register` at import. Bad input raises ``UserError`` (one line,
exit code 2).
"""
from __future__ import annotations

import signal
from pathlib import Path

import click

from ..errors import UserError
from ..render.cli_options import NPROC


def register(cli: click.Group) -> None:
    cli.add_command(train_cmd)


# ==================================================================================== train
@click.command("train")
@click.option("--preset", default=None, help="preset name (tiny, paper-101, ...); default tiny, or the run's config on --resume")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="YAML config file (instead of --preset)")
@click.option("--data", default="procedural", show_default=True, help="'procedural', an image folder or an LMDB (see `prepare`)")
@click.option("--iterations", default=None, type=int, help="the run's total number of iterations (default: the config's)")
@click.option("--out", required=True, type=click.Path(), help="run directory")
@click.option("--resume", is_flag=True, help="continue the run in --out from its newest checkpoint")
@click.option("--init-from", "init_from", default=None, type=click.Path(dir_okay=False),
              help="start from a whole training checkpoint of the authors' code (G, D, G_ema, Adam states, "
                   "iteration, path-length mean; the architecture read from the file; training settings "
                   "from --preset/--config, default paper-101)")
@click.option("--fork", "fork", default=None, type=click.Path(dir_okay=False),
              help="start a NEW run in --out from a training checkpoint of another run (weights, Adam states, "
                   "iteration, seed and data order; the source run's config, changed by --set)")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="change a training constant, e.g. --set lr=0.001 (repeatable; a resumed run refuses changes: "
                   "fork it instead)")
@click.option("--batch", "batch", default=None, type=int, help="global batch size (default: the config's)")
@click.option("--workers", default=None, type=int,
              help="data loader processes per training process (0: load in-process); default 0 on the CPU "
                   "(every core runs training threads), 2 on CUDA")
@click.option("--seed", default=None, type=int, help="seed of weights, latents and data order (default 0; the run's on --resume)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--amp", default="none", show_default=True, type=click.Choice(["none", "bf16"]), help="mixed precision")
@click.option("--tf32", is_flag=True, help="CUDA: TensorFloat-32 matmuls and convolutions (faster on Ampere and "
                                          "later, ~1e-3 relative error; ignored on the CPU)")
@click.option("--checkpoint-every", default=None, type=int, help="iterations between checkpoints (default: the config's)")
@click.option("--keep-every", "keep_every", default=None, type=int,
              help="also keep every checkpoint at a multiple of N iterations (the newest 3 are kept anyway): "
                   "the points of a learning curve")
@click.option("--sample-every", default=None, type=int, help="iterations between sample grids (default: the config's)")
@click.option("--log-every", default=None, type=int, help="iterations between TensorBoard logs (default: the config's)")
@click.option("--deterministic", is_flag=True, help="torch.use_deterministic_algorithms(True) where possible")
@click.option("--checkpoint-activations", "checkpoint_activations", is_flag=True,
              help="activation checkpointing: G and D recompute their layers' activations in the backward "
                   "(same gradients; less memory, more time: docs/training.md)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@NPROC
@click.pass_context
def train_cmd(ctx, preset, config_file, data, iterations, out, resume, init_from, fork, settings, batch, workers, seed, device, amp, tf32,
              checkpoint_every, keep_every, sample_every, log_every, deterministic, checkpoint_activations, quiet, nproc):
    """Train InfinityGAN (multi-GPU/CPU: --nproc N, or torchrun --nproc_per_node N -m infinitygan train ...).

    Writes OUT/config.yaml, OUT/checkpoints/ckpt-*.safetensors (newest 3), OUT/logs (TensorBoard)
    and OUT/samples/iter-*.png. `generate --model OUT` and `info OUT` read the newest checkpoint.
    Ctrl-C or SIGTERM: the current iteration finishes, a checkpoint is written, and --resume
    continues from it. --init-from FILE continues the authors' own training run in OUT (their
    checkpoint is read safely: a file holding code is refused). --fork RUN/checkpoints/ckpt-N.safetensors
    --set lr=0.001 continues another run in OUT with changed constants (the source is only read).
    """
    from ..config import load_config
    from ..io.runs import CONFIG_FILE
    from ..parallel.launch import relaunch
    from .loop import train

    relaunch(ctx, nproc)
    from .fork import fork_state, parse_settings, with_settings
    from .options import RunOptions
    from .state import load_run_config

    if preset and config_file:
        raise UserError("pass either --preset or --config, not both")
    if init_from and resume:
        raise UserError("--init-from starts a new run: it cannot be combined with --resume")
    if fork and (resume or init_from or preset or config_file):
        what = "--resume" if resume else "--init-from" if init_from else "--preset/--config"
        raise UserError(f"--fork starts a new run from the checkpoint's own config: it cannot be combined with {what} "
                        "(change constants with --set)")
    changed = parse_settings(settings)
    run = Path(out)
    init = None
    if fork:
        cfg, tensors, meta = fork_state(fork)
        init = (tensors, meta)
        if seed is None:
            seed = int(meta.get("seed", 0))
    elif init_from:
        cfg = load_config(config_file or preset or "paper-101")
    elif config_file:
        cfg = load_config(Path(config_file))
    elif preset:
        cfg = load_config(preset)
    elif resume and (run / CONFIG_FILE).is_file():
        cfg = load_run_config(run)
    else:
        cfg = load_config("tiny")
    changes = {k: v for k, v in (("iterations", iterations), ("batch_size", batch)) if v is not None}
    cfg = with_settings(cfg.with_training(**changes), changed)
    if init_from:
        from .official_init import official_training_state

        cfg, tensors, meta = official_training_state(init_from, cfg.training)
        init = (tensors, meta)
    if init is not None and cfg.training.iterations <= int(init[1]["iteration"]):
        raise UserError(f"{fork or init_from} is at iteration {init[1]['iteration']}: --iterations must be larger "
                        f"(the run's total, now {cfg.training.iterations})")
    options = RunOptions(device=device, amp=amp, tf32=tf32, workers=workers, checkpoint_every=checkpoint_every,
                         keep_every=keep_every,
                         sample_every=sample_every, log_every=log_every, deterministic=deterministic, quiet=quiet,
                         checkpoint_activations=checkpoint_activations,
                         keep_freed_memory=True)  # this process ends with the run (RunOptions)
    res = train(cfg, data, run, seed=seed, resume=resume, options=options, init=init)
    if res["rank"] != 0:
        return
    if res["interrupted"]:
        click.echo(f"infinitygan: {res['interrupted']}: stopped at iteration {res['iteration']}, checkpoint "
                   f"{res['checkpoint']}; continue with `infinitygan train --out {run} --resume`", err=True)
        ctx.exit(128 + int(getattr(signal.Signals, res["interrupted"])))
    spi = res["seconds_per_iteration"]
    speed = f", {spi:.2f} s/iteration" if spi else ""
    click.echo(f"iteration {res['iteration']}, {res['images_seen']} images seen{speed}; "
               f"checkpoint {res['checkpoint']}", err=True)
