"""The package's import graph is layered: the engine's core imports nothing above it, the render
pipeline and the torchrun environment import no room, and no module imports the CLI."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "infinitygan"

CORE = {"errors", "lazy", "config", "coords", "latents", "nn", "structure", "texture", "generator", "geometry", "tiling",
        "synthesis", "planning", "io", "discriminator"}
ENGINE = CORE | {"api", "bundled", "presets", "info", "render", "parallel"}
ROOMS = {"scene", "inversion", "data", "training", "metrics", "serve", "video", "bench", "official", "export", "campaign"}


def _top(module: Path) -> str:
    rel = module.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _imports(module: Path) -> set[str]:
    """Top-level package members imported by ``module`` (absolute or relative, also lazy ones)."""
    tree = ast.parse(module.read_text())
    depth = len(module.relative_to(PKG).parts) - 1  # 0 for infinitygan/x.py
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "infinitygan":
                    continue
                rest = parts[1:]
            else:
                up = node.level - 1
                if up > depth:
                    continue
                base = list(module.relative_to(PKG).parts[:-1])[: depth - up]
                rest = base + (node.module.split(".") if node.module else [])
            if rest:
                out.add(rest[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "infinitygan" and len(parts) > 1:
                    out.add(parts[1])
    return out


def _graph() -> dict[Path, set[str]]:
    return {m: _imports(m) for m in PKG.rglob("*.py")}


def test_the_core_imports_only_the_core():
    bad = {str(m.relative_to(PKG)): sorted(i - CORE) for m, i in _graph().items() if _top(m) in CORE and i - CORE}
    assert not bad, bad


def test_the_render_pipeline_and_torchrun_environment_import_no_room():
    bad = {str(m.relative_to(PKG)): sorted(i & ROOMS) for m, i in _graph().items()
           if _top(m) in ("render", "parallel") and i & ROOMS}
    assert not bad, bad


def test_nothing_imports_the_cli_module():
    bad = [str(m.relative_to(PKG)) for m, i in _graph().items()
           if "cli" in i and m.name not in ("__main__.py",) and _top(m) != "cli"]
    assert not bad, bad


#: what one command-line module may take from another: option declarations and their parsing
SHARED_CLI = {"render_options", "options_from", "NPROC", "scene_options", "scene_from_options", "NAMES"}


def _cli_imports(module: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import of a command-line module (``*.cli``, ``render.cli_options``)."""
    tree = ast.parse(module.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in ("cli", "cli_options"):
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_logic_lives_outside_the_command_line_modules():
    """Only command-line modules import command-line modules, and only option declarations:
    logic other rooms need (e.g. the job of `generate --latents`) lives in a module of its room."""
    cli_modules = {"cli.py", "cli_options.py", "__main__.py"}
    bad = {}
    for m in PKG.rglob("*.py"):
        for mod, names in _cli_imports(m):
            if m.name not in cli_modules or (m.name != "__main__.py" and set(names) - SHARED_CLI):
                bad[str(m.relative_to(PKG))] = (mod, names)
    assert not bad, bad


def test_the_graph_is_read():
    g = _graph()
    assert "render" in g[PKG / "api.py"] and "synthesis" in g[PKG / "render" / "pipeline.py"]
    assert "scene" in g[PKG / "inversion" / "outpaint.py"]


def test_every_room_registers_its_commands(monkeypatch):
    """With the test extras installed every room's commands are there; a room whose own import
    breaks raises instead of silently losing its commands (only a missing third-party module,
    an optional extra, hides a room)."""
    import importlib

    from infinitygan import cli

    want = {"bench", "convert-official", "eval", "export", "generate", "inbetween", "info", "init", "invert",
            "outpaint", "pan", "prepare", "presets", "serve", "train"}
    assert want <= set(cli.cli.commands), sorted(want - set(cli.cli.commands))

    real = importlib.import_module

    def broken(name, package=None):
        if name == ".video.cli":
            raise ImportError("cannot import name 'gone' from 'infinitygan.video.frames'", name="infinitygan.video.frames")
        if name == ".serve.cli":
            raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError, match="gone"):
        cli._register_optional()
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, package=None: broken(".serve.cli", package) if name == ".video.cli" else broken(name, package))
    cli._register_optional()  # a missing extra: the room is skipped, the others register
