"""``infinitygan presets``: the configuration presets shipped in ``infinitygan/configs``, one line each."""
from __future__ import annotations

import click

from .config import PRESET_DIR, list_presets


def preset_description(name: str) -> str:
    """The first comment line of a preset's YAML file (its one-line description)."""
    for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@click.command("presets")
def presets_cmd():
    """List the presets (for `init --preset`, `train --preset`) with a one-line description."""
    names = list_presets()
    width = max(len(n) for n in names)
    for name in names:
        click.echo(f"{name:<{width}}  {preset_description(name)}")


def register(cli: click.Group) -> None:
    cli.add_command(presets_cmd)
