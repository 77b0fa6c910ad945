"""A campaign: a training run longer than one session, kept in the repository.

Layout (ROOT is the checkout; ``campaigns/`` is committed, ``runs/`` is not)::

    ROOT/campaigns/NAME/campaign.yaml      what the campaign is: its run, its commands (below)
    ROOT/campaigns/NAME/state.safetensors  the compact resume state (``campaign.state``), replaced in place
    ROOT/campaigns/NAME/progress.tsv       one row per saved state or evaluation (``campaign.progress``)
    ROOT/runs/NAME/                        the working run directory (``train --out``), restored from the state

campaign.yaml::

    name: bundled
    goal: one line: what the campaign is for and when it is done
    start: train --preset tiny --set colour_consistency_weight=5 --seed 0 --iterations 40000
    options: --quiet --checkpoint-every 250    # how it runs: added to every train command
    threads: 1                                 # OMP_NUM_THREADS of the training process
    moments: bf16                              # precision of the stored Adam second moments
    eval: {num: 256, scales: [1, 8], seeds: [0]}

``start`` begins the run (``--out`` is added: runs/NAME); later sessions continue it with
``train --out runs/NAME --resume`` plus ``options`` (the run's config.yaml holds its constants).
Constants that change part-way make a new leg: a fork (``train --fork CKPT --set ...``) whose
first checkpoint is then saved as the campaign's state, with ``start`` updated to that command.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError

CAMPAIGNS = "campaigns"
RUNS = "runs"
SPEC = "campaign.yaml"
STATE = "state.safetensors"
PROGRESS = "progress.tsv"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: train options a campaign command may not set itself (the campaign decides them)
_OWNED = ("--out", "--resume", "--nproc")


@dataclass(frozen=True)
class EvalSpec:
    num: int = 256
    scales: tuple[int | str, ...] = (1,)  # N of the N x views, or "patch"
    seeds: tuple[int, ...] = (0,)
    data: str = "procedural"

    def __post_init__(self):
        if not isinstance(self.num, int) or not 2 <= self.num <= 50_000:
            raise UserError(f"eval.num must be an integer in 2..50000, got {self.num!r}")
        if not self.seeds or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in self.seeds):
            raise UserError(f"eval.seeds must be a non-empty list of non-negative integers, got {list(self.seeds)!r}")
        if not self.scales or any(v != "patch" and (not isinstance(v, int) or isinstance(v, bool) or v < 1)
                                  for v in self.scales):
            raise UserError(f"eval.scales must be a non-empty list of integers >= 1 or 'patch', got {list(self.scales)!r}")


@dataclass(frozen=True)
class Campaign:
    name: str
    root: Path
    start: tuple[str, ...]
    options: tuple[str, ...] = ()
    threads: int = 1
    moments: str = "bf16"
    goal: str = ""
    eval: EvalSpec = field(default_factory=EvalSpec)

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise UserError(f"campaign name {self.name!r}: use lower-case letters, digits, '.', '_' or '-'")
        if not self.start or self.start[0] != "train":
            raise UserError(f"campaign {self.name}: start must be a `train ...` command, got {' '.join(self.start)!r}")
        for opt in _OWNED:
            for words in (self.start, self.options):
                if any(w == opt or w.startswith(opt + "=") for w in words):
                    raise UserError(f"campaign {self.name}: {opt} is set by the campaign, not by its commands")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or not 1 <= self.threads <= 1024:
            raise UserError(f"campaign {self.name}: threads must be an integer in 1..1024, got {self.threads!r}")
        from .state import MOMENTS

        if self.moments not in MOMENTS:
            raise UserError(f"campaign {self.name}: moments must be one of {', '.join(MOMENTS)}, got {self.moments!r}")

    # ------------------------------------------------------------------------------ paths
    @property
    def folder(self) -> Path:
        return self.root / CAMPAIGNS / self.name

    @property
    def run(self) -> Path:
        return self.root / RUNS / self.name

    @property
    def state_path(self) -> Path:
        return self.folder / STATE

    @property
    def progress_path(self) -> Path:
        return self.folder / PROGRESS

    @property
    def total_iterations(self) -> int | None:
        """The campaign's total: the start command's ``--iterations`` (None: not given). A fork
        leg (`train --fork ... --iterations N+1`) does not change it."""
        words = list(self.start)
        for i, w in enumerate(words):
            value = words[i + 1] if w == "--iterations" and i + 1 < len(words) else (
                w.split("=", 1)[1] if w.startswith("--iterations=") else None)
            if value is not None:
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    # --------------------------------------------------------------------------- commands
    def start_command(self) -> list[str]:
        return [*self.start, *self.options, "--out", str(self.run)]

    def resume_command(self, iterations: int | None = None) -> list[str]:
        cmd = ["train", "--out", str(self.run), "--resume", *self.options]
        return cmd + (["--iterations", str(iterations)] if iterations is not None else [])

    def to_dict(self) -> dict:
        return {"name": self.name, "goal": self.goal, "start": shlex.join(self.start),
                "options": shlex.join(self.options), "threads": self.threads, "moments": self.moments,
                "eval": {"num": self.eval.num, "scales": list(self.eval.scales), "seeds": list(self.eval.seeds),
                         "data": self.eval.data}}


def _words(value, what: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        return tuple(value)
    if not isinstance(value, str):
        raise UserError(f"campaign {name}: {what} must be a command line (a string), got {type(value).__name__}")
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise UserError(f"campaign {name}: cannot parse {what}: {e}") from None
    if words[:1] == ["infinitygan"]:
        words = words[1:]
    return tuple(words)


def from_dict(d: dict, root: str | Path) -> Campaign:
    if not isinstance(d, dict):
        raise UserError(f"a campaign.yaml is a mapping (name, start, ...), got {type(d).__name__}")
    unknown = set(d) - {"name", "goal", "start", "options", "threads", "moments", "eval"}
    if unknown:
        raise UserError(f"campaign.yaml: unknown field {sorted(unknown)[0]!r}")
    name = d.get("name")
    if not isinstance(name, str):
        raise UserError(f"campaign.yaml: name must be a string, got {name!r}")
    ev = d.get("eval") or {}
    if not isinstance(ev, dict) or set(ev) - {"num", "scales", "seeds", "data"}:
        raise UserError(f"campaign {name}: eval must be a mapping of num, scales, seeds, data")
    try:
        espec = EvalSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in ev.items()})
    except TypeError as e:
        raise UserError(f"campaign {name}: eval: {e}") from None
    goal = d.get("goal") or ""
    return Campaign(name=name, root=Path(root), start=_words(d.get("start"), "start", name),
                    options=_words(d.get("options"), "options", name), threads=d.get("threads", 1),
                    moments=d.get("moments", "bf16"), goal=str(goal), eval=espec)


def load(name: str, root: str | Path = ".") -> Campaign:
    """The campaign ``ROOT/campaigns/NAME``; UserError when it does not exist or is malformed."""
    if not _NAME.match(name or ""):
        raise UserError(f"campaign name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    path = Path(root) / CAMPAIGNS / name / SPEC
    if not path.is_file():
        known = list_names(root)
        hint = f" (campaigns here: {', '.join(known)})" if known else f" (no {CAMPAIGNS}/ folder in {Path(root).resolve()})"
        raise UserError(f"no campaign {name!r}: {path} not found{hint}")
    from ..io import safe_yaml

    try:
        d = safe_yaml.load(path.read_text())
    except UserError as e:  # syntax, alias bombs
        raise UserError(f"cannot parse {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"cannot parse {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    c = from_dict(d, root)
    if c.name != name:
        raise UserError(f"{path}: name {c.name!r} differs from its folder {name!r}")
    return c


def write(c: Campaign) -> Path:
    from ..io.images import atomic_path

    c.folder.mkdir(parents=True, exist_ok=True)
    path = c.folder / SPEC
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(c.to_dict(), sort_keys=False))
    return path


def list_names(root: str | Path = ".") -> list[str]:
    d = Path(root) / CAMPAIGNS
    return sorted(p.name for p in d.iterdir() if (p / SPEC).is_file()) if d.is_dir() else []
