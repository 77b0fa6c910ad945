"""The project's one exception for bad input, and the integer check every boundary uses."""
from __future__ import annotations

import numbers


class UserError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2."""


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int; UserError for floats, bools, None or anything non-integral."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
    return value
