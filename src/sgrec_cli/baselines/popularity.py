"""Most-popular baseline: recommend the items seen most often in the training interactions.

For a user with chronological sequence s_1..s_n the leave-one-out split holds out s_{n-1}
(valid) and s_n (test), so the training interactions are s_1..s_{n-2}. They are counted once
each as: the target of every train example (s_2..s_{n-2}) plus the user's first item s_1.
Histories are not counted item by item (they overlap and are truncated), and valid/test targets
never count. Score(i) = count(i); ranking is by count descending, ties by lower item index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.split import Example
from ..errors import ConfigError, SgrecError


class MostPopular:
    """Popularity counts over training interactions; the same ranked list for every user."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None  # (n_items,) int64
        self.order: np.ndarray | None = None  # (n_items,) item indices, most popular first

    def fit(self, train_examples: Sequence[Example], sequences: Sequence[Sequence[int]] | None
            = None, n_items: int | None = None) -> MostPopular:
        """Count count(i) = #{train examples with target i} + #{users whose first item is i}.

        The first item s_1 is taken from ``sequences[u][0]`` when sequences are given (this also
        covers users with 3 items, who have no train example); otherwise from ``history[0]`` of
        each user's first train example in list order, whose history is (s_1,). ``n_items``
        defaults to 1 + the largest item index seen.
        """
        items: list[int] = [e.target for e in train_examples]
        if sequences is not None:
            items.extend(seq[0] for seq in sequences if len(seq) > 0)
        else:
            seen: set[int] = set()
            for e in train_examples:
                if e.user not in seen:
                    seen.add(e.user)
                    if e.history:
                        items.append(e.history[0])
        arr = np.asarray(items, dtype=np.int64)
        if arr.size and arr.min() < 0:
            raise SgrecError(f"negative item index {int(arr.min())} in the training data")
        if n_items is None:
            n_items = int(arr.max()) + 1 if arr.size else 0
        if n_items < 1:
            raise SgrecError("no items to rank: the training data is empty")
        if arr.size and arr.max() >= n_items:
            raise SgrecError(f"item index {int(arr.max())} is outside the catalogue of "
                             f"{n_items} items")
        self.counts = np.bincount(arr, minlength=n_items).astype(np.int64)
        self.order = np.argsort(-self.counts, kind="stable")  # stable: ties by lower index
        return self

    @property
    def n_items(self) -> int:
        return 0 if self.counts is None else int(self.counts.size)

    def recommend(self, histories: Sequence[Sequence[int]], k: int,
                  exclude_history: bool = False) -> np.ndarray:
        """Top-k item indices per user, int64 (U, k), best first; -1 pads when too few items.

        Without ``exclude_history`` every row is order[:k]. With it, row u is the first k items
        of ``order`` not in histories[u] (still k items while the catalogue allows).
        """
        if self.order is None:
            raise SgrecError("MostPopular.recommend called before fit")
        if int(k) != k or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        k, n_users, n = int(k), len(histories), self.n_items
        if not exclude_history:
            row = np.full(k, -1, dtype=np.int64)
            row[: min(k, n)] = self.order[:k]
            return np.tile(row, (n_users, 1))

        # Only the first k + L ranked items can be needed, L = the longest history.
        max_len = max((len(h) for h in histories), default=0)
        m = min(n, k + max_len)
        cand = self.order[:m]  # (m,)
        pos = np.empty(n, dtype=np.int64)
        pos[self.order] = np.arange(n)  # pos[i] = rank position of item i
        lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=n_users)
        flat = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=lens.sum())
        rows = np.repeat(np.arange(n_users), lens)
        ok = (flat >= 0) & (flat < n)
        rows, p = rows[ok], pos[flat[ok]]
        keep = p < m
        masked = np.zeros((n_users, m), dtype=bool)
        masked[rows[keep], p[keep]] = True
        # Stable argsort puts unmasked columns first, in rank order.
        cols = np.argsort(masked, axis=1, kind="stable")[:, :k]  # (U, min(k, m))
        out = np.full((n_users, k), -1, dtype=np.int64)
        picked = np.where(np.take_along_axis(masked, cols, axis=1), -1, cand[cols])
        out[:, : cols.shape[1]] = picked
        return out
