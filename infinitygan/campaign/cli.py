"""The ``campaign`` command group: training runs longer than a session, kept in the repository.

    infinitygan campaign new NAME --start "train --preset tiny --seed 0 --iterations 40000" [--threads 1]
    infinitygan campaign train NAME --hours 2        # restores runs/NAME from the state when missing
    infinitygan campaign eval NAME                    # SWD of the newest checkpoint -> progress.tsv
    infinitygan campaign save NAME                    # newest checkpoint -> campaigns/NAME/state.safetensors
    infinitygan campaign status [NAME] | restore NAME | list

``infinitygan.cli`` calls :func:`register` at import. Bad input raises ``UserError`` (one line, exit 2).
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from ..errors import UserError

ROOT = click.option("--root", default=".", show_default=True, type=click.Path(file_okay=False),
                    help="the checkout holding campaigns/ and runs/")


def register(cli: click.Group) -> None:
    cli.add_command(campaign)


def _emit(d: dict) -> None:
    click.echo(json.dumps(d))


@click.group("campaign")
def campaign():
    """Training runs that outlive a session: compact state in campaigns/NAME, run in runs/NAME."""


@campaign.command("new")
@click.argument("name")
@click.option("--start", required=True, help='the train command that begins the run, e.g. "train --preset tiny --seed 0"')
@click.option("--options", default="", help='how it runs, added to every train command, e.g. "--quiet --amp bf16"')
@click.option("--threads", default=1, show_default=True, type=int, help="OMP threads of the training process")
@click.option("--moments", default="bf16", show_default=True, type=click.Choice(["bf16", "fp32"]),
              help="precision of the stored Adam second moments (fp32: resumption bit for bit)")
@click.option("--goal", default="", help="one line: what the campaign is for and when it is done")
@click.option("--eval-num", default=256, show_default=True, type=int)
@click.option("--eval-scales", default="1", show_default=True, help="comma-separated N of the N x views, or patch")
@click.option("--eval-seeds", default="0", show_default=True, help="comma-separated eval seeds (their mean is logged)")
@ROOT
def new_cmd(name, start, options, threads, moments, goal, eval_num, eval_scales, eval_seeds, root):
    """Write campaigns/NAME/campaign.yaml (refused when the campaign exists)."""
    from . import spec

    d = {"name": name, "goal": goal, "start": start, "options": options, "threads": threads, "moments": moments,
         "eval": {"num": eval_num, "scales": _scales(eval_scales),
                  "seeds": _ints(eval_seeds, "--eval-seeds")}}
    c = spec.from_dict(d, root)
    if (c.folder / spec.SPEC).exists():
        raise UserError(f"campaign {name} exists: edit {c.folder / spec.SPEC}")
    _emit({"campaign": name, "spec": str(spec.write(c)), "start": "infinitygan " + shlex.join(c.start_command())})


def _scales(text: str) -> list:
    """``"patch,1,8"`` -> ``["patch", 1, 8]``."""
    out = []
    for x in text.split(","):
        x = x.strip()
        if x == "patch":
            out.append(x)
        elif x:
            out += _ints(x, "--scales")
    if not out or any(v != "patch" and v < 1 for v in out):
        raise UserError(f"scales must be 'patch' or integers >= 1, got {text!r}")
    return out


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated integers, got {text!r}") from None


@campaign.command("list")
@ROOT
def list_cmd(root):
    """The campaigns of the checkout, one JSON line each."""
    from . import runner, spec

    for name in spec.list_names(root):
        _emit(runner.status(spec.load(name, root)))


@campaign.command("status")
@click.argument("name")
@ROOT
def status_cmd(name, root):
    """Where a campaign stands: its state, its run, its newest evaluation."""
    from . import runner, spec

    _emit(runner.status(spec.load(name, root)))


@campaign.command("restore")
@click.argument("name")
@ROOT
def restore_cmd(name, root):
    """Write the committed state into runs/NAME (when the run is missing or older)."""
    from . import runner, spec

    c = spec.load(name, root)
    runner.check_state(c)
    path = runner.restore(c)
    _emit({"campaign": name, "restored": str(path) if path else None, "run_iteration": runner.run_iteration(c)})


@campaign.command("train")
@click.argument("name")
@click.option("--hours", default=None, type=float, help="wall-clock budget (SIGTERM, then the loop checkpoints)")
@click.option("--seconds", default=None, type=float, help="the budget in seconds (instead of --hours)")
@click.option("--cpu-hours", default=None, type=float,
              help="CPU-time budget of the training process (fair between runs sharing cores; Linux)")
@click.option("--iterations", default=None, type=int, help="the run's total (default: its own)")
@ROOT
def train_cmd(name, hours, seconds, cpu_hours, iterations, root):
    """Continue the campaign: restore runs/NAME if needed, then train --resume (or start it)."""
    from . import runner, spec

    if hours is not None and seconds is not None:
        raise UserError("pass --hours or --seconds, not both")
    budget = hours * 3600 if hours is not None else seconds
    _emit(runner.train(spec.load(name, root), budget, iterations, cpu_hours * 3600 if cpu_hours is not None else None))


@campaign.command("save")
@click.argument("name")
@click.option("--note", default="", help="a note for the progress log")
@click.option("--train-seconds", default=0.0, type=float,
              help="training wall seconds not counted by `campaign train` (a leg run by hand)")
@click.option("--cpu-seconds", default=0.0, type=float, help="CPU seconds not counted by `campaign train`")
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="save this training checkpoint instead of runs/NAME's newest (one from a lent GPU, "
                   "or a fork that starts a new leg); runs/NAME then continues from it")
@ROOT
def save_cmd(name, note, train_seconds, cpu_seconds, checkpoint, root):
    """Replace campaigns/NAME/state.safetensors with runs/NAME's newest checkpoint (then commit it)."""
    from . import runner, spec

    _emit(runner.save(spec.load(name, root), note, train_seconds, checkpoint, cpu_seconds))


@campaign.command("eval")
@click.argument("name")
@click.option("--num", default=None, type=int, help="images per set (default: the campaign's)")
@click.option("--scales", default=None, help="comma-separated N or patch (default: the campaign's)")
@click.option("--seeds", default=None, help="comma-separated eval seeds (default: the campaign's)")
@click.option("--note", default="", help="a note for the progress log")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="evaluate this checkpoint of the run instead of the newest (repeatable; e.g. the ones "
                   "kept by `train --keep-every`: the learning curve)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@ROOT
def eval_cmd(name, num, scales, seeds, note, checkpoints, quiet, root):
    """SWD x1e3 of runs/NAME's newest checkpoint (mean over the seeds), appended to progress.tsv."""
    from . import runner, spec

    if num is not None and not 2 <= num <= 50_000:
        raise UserError(f"--num must be in 2..50000, got {num}")
    s = tuple(_scales(scales)) if scales else None
    e = tuple(_ints(seeds, "--seeds")) if seeds else None
    c = spec.load(name, root)
    for ckpt in sorted(checkpoints, key=lambda p: Path(p).name) or [None]:
        _emit(runner.evaluate(c, num, s, e, note, progress_bar=not quiet, checkpoint=ckpt))
