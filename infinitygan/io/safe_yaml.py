"""YAML from users' files (configs, scenes, a run's config.yaml) read without surprises.

``yaml.safe_load`` builds no objects, but anchors and aliases still let a few hundred bytes
stand for gigabytes: each alias is one more reference to a node, and nine levels of nine
aliases expand to 9^9 values when the document is walked (by the loader, by a check, by a
message that prints the value). ``load`` composes the document (aliases stay references, so
this is linear in the text), counts the nodes the document would have with every alias
expanded, and refuses it above ``MAX_EXPANDED_NODES`` more than it holds written out, before
any value is built. Recursive aliases and documents nested deeper than Python's stack are
refused too. Every refusal is a ``UserError`` (one line).
"""
from __future__ import annotations

from typing import Any

import yaml

from ..errors import UserError

#: how many more nodes than the text holds a document may have once its aliases are expanded
MAX_EXPANDED_NODES = 10_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that checks the alias expansion of a document before constructing it."""

    def construct_document(self, node):
        _check_expansion(node)
        return super().construct_document(node)


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _check_expansion(root) -> None:
    """UserError when the aliases of the document under ``root`` expand it by more than
    MAX_EXPANDED_NODES nodes, or when an alias refers to a node that contains it."""
    size: dict[int, int] = {}  # id(node) -> nodes of its expanded subtree
    distinct: set[int] = set()
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:  # iterative post-order walk: deep documents do not exhaust Python's stack
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] - len(distinct) > MAX_EXPANDED_NODES:
                raise UserError(f"refused: the document's anchors and aliases (&name / *name) expand it to more "
                                f"than {MAX_EXPANDED_NODES:,} values beyond what is written (write the values out)")
            continue
        if key in size:
            continue
        if key in open_:
            raise UserError("refused: an alias (*name) refers to a value that contains it (a recursive document)")
        open_.add(key)
        distinct.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)) if id(c) not in size)


def load(text: str) -> Any:
    """The value of a YAML document (``yaml.safe_load``), refusing alias bombs, recursive
    aliases and nesting deeper than the stack; UserError (one line, without the file name:
    callers add it) for those and for syntax errors."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise UserError((str(e).splitlines() or [type(e).__name__])[0]) from None
    except RecursionError:
        raise UserError("nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise UserError((str(e).splitlines() or [type(e).__name__])[0]) from None
