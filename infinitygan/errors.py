"""The project's one exception for bad input, the lost-peer error of distributed runs, and the
integer check every boundary uses."""
from __future__ import annotations

import numbers


class UserError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


class LostPeer(Exception):
    """A process of the torch.distributed group ended (killed, crashed, its machine gone) while
    this one waited on it: one line on stderr, exit code 1 (torchrun's elastic agent then restarts
    the group when --max-restarts allows)."""


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int; UserError for floats, bools, None or anything non-integral."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{name} must be an integer, got {shown(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
    return value


def shown(value, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters: a value read from a user's file
    can be a list of thousands of entries or an integer of thousands of digits, and a message
    stays one short line."""
    if isinstance(value, (list, tuple)) and len(value) > limit:  # no repr of the whole
        value = list(value[:limit])
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
