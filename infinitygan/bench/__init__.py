"""Timing the engine's tiling schemes (the default tiles, the authors' 101-pixel patches,
one-shot synthesis): ``schemes`` measures, ``cli`` is the ``bench`` command."""
