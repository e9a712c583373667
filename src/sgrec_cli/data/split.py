"""Leave-one-out split (docs/design.md §3), as pure functions.

For a chronological sequence s_1..s_n: test = (s_1..s_{n-1} -> s_n), valid = (s_1..s_{n-2} ->
s_{n-1}), train = every prefix of s_1..s_{n-2} predicting its next item, i.e. (s_1 -> s_2) ...
(s_1..s_{n-3} -> s_{n-2}). Histories keep only the ``max_history`` most recent items.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    user: int
    history: tuple[int, ...]
    target: int


def truncate(history: list[int], max_history: int) -> tuple[int, ...]:
    return tuple(history[-max_history:])


def leave_one_out(
    user: int, seq: list[int], max_history: int
) -> tuple[list[Example], Example, Example]:
    """Split one user's sequence into (train examples, valid example, test example)."""
    if len(seq) < 3:
        raise ValueError(f"leave-one-out needs at least 3 items, got {len(seq)}")
    n = len(seq)
    test = Example(user, truncate(seq[: n - 1], max_history), seq[n - 1])
    valid = Example(user, truncate(seq[: n - 2], max_history), seq[n - 2])
    train = [Example(user, truncate(seq[:t], max_history), seq[t]) for t in range(1, n - 2)]
    return train, valid, test


def split_all(
    sequences: list[list[int]], max_history: int
) -> tuple[list[Example], list[Example], list[Example]]:
    train: list[Example] = []
    valid: list[Example] = []
    test: list[Example] = []
    for u, seq in enumerate(sequences):
        tr, va, te = leave_one_out(u, seq, max_history)
        train.extend(tr)
        valid.append(va)
        test.append(te)
    return train, valid, test
