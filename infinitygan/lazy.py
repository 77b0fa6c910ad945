"""Lazy package exports (PEP 562): a package names what it exports and from which submodule;
the submodule (and torch behind it) is imported on first use, so commands that need neither
(``presets``, ``--help``) start in a fraction of a second and a few tens of MB."""
from __future__ import annotations

import importlib


def exports(package: str, table: dict[str, str]):
    """(__getattr__, __dir__) for ``package`` exporting ``{name: submodule}`` lazily."""

    def __getattr__(name: str):
        if name in table:
            value = getattr(importlib.import_module(f".{table[name]}", package), name)
            setattr(importlib.import_module(package), name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(importlib.import_module(package))) | set(table))

    return __getattr__, __dir__
