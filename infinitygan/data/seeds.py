"""Seeds derived from tuples of integers: every random draw of training is a function of them."""
from __future__ import annotations

import numpy as np
import torch


def derived_seed(*words: int) -> int:
    """A 63-bit seed that is a pure function of ``words`` (non-negative or negative ints)."""
    ss = np.random.SeedSequence([int(w) & ((1 << 63) - 1) for w in words])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seeded_generator(*words: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``derived_seed(*words)``."""
    g = torch.Generator()
    g.manual_seed(derived_seed(*words))
    return g
