"""Seeded subsets: the one way a step draws "n of these" reproducibly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def seeded_subset(items: Sequence[T], n: int, seed: int) -> list[T]:
    """``n`` of ``items`` drawn without replacement with ``seed``, in their original order;
    all of them when ``n`` is 0 or at least their number."""
    if n == 0 or n >= len(items):
        return list(items)
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]
