"""A campaign's progress log: ``campaigns/NAME/progress.tsv``, one row per event, appended.

Columns: ``date`` (UTC, ISO), ``event`` (``save``: a state was committed; ``eval``: a measurement;
``note``), ``iteration``, ``images`` (seen so far), ``train_hours`` and ``cpu_hours`` (the
campaign's training wall time and the training process's CPU time so far), ``metrics`` (``key=value`` pairs separated by spaces, e.g. ``swd_1x=83.9 swd_8x=119.9``)
and ``note`` (free text, no tabs). The file is plain text so that ``git diff`` shows progress.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

COLUMNS = ("date", "event", "iteration", "images", "train_hours", "cpu_hours", "metrics", "note")
EVENTS = ("save", "eval", "note")


@dataclass(frozen=True)
class Row:
    event: str
    iteration: int
    images: int
    train_hours: float
    cpu_hours: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""
    date: str = ""

    def line(self) -> str:
        date = self.date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        metrics = " ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        note = " ".join(self.note.split())  # no tabs or newlines
        return "\t".join((date, self.event, str(self.iteration), str(self.images), f"{self.train_hours:.3f}",
                          f"{self.cpu_hours:.3f}", metrics, note))


def append(path: str | Path, row: Row) -> None:
    if row.event not in EVENTS:
        raise UserError(f"progress event must be one of {', '.join(EVENTS)}, got {row.event!r}")
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write(row.line() + "\n")


def _metrics(text: str) -> dict[str, float]:
    out = {}
    for item in text.split():
        k, _, v = item.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def read(path: str | Path) -> list[Row]:
    """The rows of a progress log (malformed lines are skipped); [] when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != len(COLUMNS):
            continue
        date, event, it, images, hours, cpu, metrics, note = parts
        try:
            rows.append(Row(event=event, iteration=int(it), images=int(images), train_hours=float(hours),
                            cpu_hours=float(cpu), metrics=_metrics(metrics), note=note, date=date))
        except ValueError:
            continue
    return rows
