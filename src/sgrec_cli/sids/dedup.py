"""Semantic-ID collisions and the two ways of removing them.

Item i has the code tuple ``codes[i] = (c_1..c_L)`` with ``0 <= c_l < K``; ``codes`` is an int
array of shape (N, L). Two items *collide* when their full tuples are equal. A generator decodes
tuples to items, so a collision makes those items indistinguishable. We offer:

- ``dedup_suffix``: TIGER-style extra level ``c_{L+1}`` = rank of the item within its collision
  group (by item index), 0 for items with a unique code. Always possible; lengthens every ID.
- ``dedup_reassign``: keep L levels and move all but one item of each collision group to a free
  last-level code under the same (L-1)-level prefix, greedily by cost. Possible only when no
  prefix holds more than K items.
"""

from __future__ import annotations

import numpy as np

from ..errors import SgrecError


def as_codes(codes: np.ndarray, min_levels: int = 1) -> np.ndarray:
    """``codes`` as an int64 (N, L) array; ValueError for a wrong shape or a non-integer dtype."""
    a = np.asarray(codes)
    if a.ndim != 2 or a.shape[1] < min_levels:
        raise ValueError(f"codes must have shape (N, L) with L >= {min_levels}, got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"codes must be >= 0, got {a.min()}")
    return a.astype(np.int64, copy=False)


def row_groups(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal rows of a (N, M) array: (group id per row (N,), sizes (G,), first row (G,)).

    Group ids follow the lexicographic order of the rows; M = 0 puts every row in one group.
    """
    n = a.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if a.shape[1] == 0:
        # the empty prefix: all rows are equal
        return np.zeros(n, dtype=np.int64), np.array([n]), np.array([0])
    _, first, inv, counts = np.unique(
        a, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    # numpy 2.0.0 returned inverse with an extra axis when axis= is given
    return inv.reshape(-1).astype(np.int64), counts.astype(np.int64), first.astype(np.int64)


def _members_by_group(inv: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Item indices of every group, ascending within each group, in group-id order."""
    order = np.argsort(inv, kind="stable")  # stable: ascending item index inside a group
    return np.split(order, np.cumsum(counts)[:-1])


def collision_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Groups of >= 2 items with one full code (indices ascending), ordered by first member."""
    codes = as_codes(codes)
    inv, counts, first = row_groups(codes)
    members = _members_by_group(inv, counts)
    shared = np.flatnonzero(counts >= 2)
    return [members[g] for g in shared[np.argsort(first[shared], kind="stable")]]


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose full code is shared: |{i : exists j != i, codes[j] = codes[i]}| / N.

    Two items sharing one code both count; 0.0 for no items.
    """
    codes = as_codes(codes)
    n = codes.shape[0]
    if n == 0:
        return 0.0
    inv, counts, _ = row_groups(codes)
    return float(np.count_nonzero(counts[inv] >= 2) / n)


def dedup_suffix(codes: np.ndarray) -> np.ndarray:
    """Append c_{L+1}(i) = #{j < i : codes[j] = codes[i]}: (N, L) -> (N, L+1).

    The rank of each item inside its collision group by item index (0 for unique codes), so the
    L+1 tuples are unique. The new level has max group size codes, not K.
    """
    codes = as_codes(codes)
    n = codes.shape[0]
    inv, counts, _ = row_groups(codes)
    order = np.argsort(inv, kind="stable")  # items grouped, ascending index inside each group
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)  # (G,)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[inv[order]]
    return np.concatenate([codes, rank[:, None]], axis=1)


def _greedy_assign(cost: np.ndarray) -> np.ndarray:
    """Assign each of m rows a distinct column of a (m, f) cost matrix, m <= f, greedily.

    Visit the (cost, row, col) triples in ascending order and take a pair when both its row and
    its column are still free. Deterministic; exact when the rows' cheapest columns do not clash,
    otherwise an approximation of the minimum-cost assignment (no Hungarian solver in numpy).
    """
    m, f = cost.shape
    rows, cols = np.divmod(np.arange(m * f), f)  # (m*f,) each, row-major
    order = np.lexsort((cols, rows, cost.ravel()))  # last key is primary: cost, then row, col
    col_of = np.full(m, -1, dtype=np.int64)
    col_taken = np.zeros(f, dtype=bool)
    left = m
    for k in order:
        r, c = rows[k], cols[k]
        if col_of[r] < 0 and not col_taken[c]:
            col_of[r] = c
            col_taken[c] = True
            left -= 1
            if left == 0:
                break
    return col_of


def dedup_reassign(codes: np.ndarray, last_level_cost: np.ndarray, K: int) -> np.ndarray:
    """Make full codes unique by moving colliding items to free last-level codes: (N, L) -> (N, L).

    ``last_level_cost[i, k]`` (N, K) is the cost of giving item i last-level code k, e.g.
    ||r_i - e_k||^2 for its last-level residual r_i and codeword e_k. In each collision group
    the item with the lowest cost for the shared code keeps it (ties: lowest index); the others
    ("movers") of a prefix p = (c_1..c_{L-1}) take codes from
    free(p) = {0..K-1} minus {last codes still used under p}, one each, by ``_greedy_assign`` on
    the cost sub-matrix movers x free(p) (greedy on sorted (cost, item, code) triples, which
    approximates min sum cost). Levels 1..L-1 never change. Raises SgrecError when a prefix
    holds more than K items, since its items cannot all differ on the last level.
    """
    codes = as_codes(codes)
    n, depth = codes.shape
    cost = np.asarray(last_level_cost, dtype=np.float64)
    if cost.shape != (n, K):
        raise ValueError(f"last_level_cost must have shape (N, K) = {(n, K)}, got {cost.shape}")
    if np.isnan(cost).any():
        raise ValueError("last_level_cost contains NaN")
    if n and codes.max() >= K:
        raise ValueError(f"codes must be < K = {K}, got {codes.max()}")

    prefixes = codes[:, : depth - 1]
    p_inv, p_counts, p_first = row_groups(prefixes)
    too_big = np.flatnonzero(p_counts > K)
    if too_big.size:
        g = too_big[np.argmin(p_first[too_big])]  # the one met first in item order
        prefix = tuple(int(c) for c in prefixes[p_first[g]])
        raise SgrecError(
            f"{p_counts[g]} items share the semantic-ID prefix {prefix} but the last level has "
            f"only K={K} codes, so reassignment cannot make them unique; use --dedup suffix or "
            "a larger codebook"
        )

    out = codes.copy()
    f_inv, f_counts, _ = row_groups(codes)
    if n == 0 or f_counts.max() < 2:
        return out
    # winner of each collision group: sort by (group, own cost, index), keep the first
    own = cost[np.arange(n), codes[:, -1]]  # (N,)
    order = np.lexsort((np.arange(n), own, f_inv))
    first_in_group = np.ones(n, dtype=bool)
    first_in_group[1:] = f_inv[order][1:] != f_inv[order][:-1]
    mover = np.zeros(n, dtype=bool)
    mover[order[~first_in_group]] = True

    for members in _members_by_group(p_inv, p_counts):  # prefixes in lexicographic order
        movers = members[mover[members]]  # ascending item index
        if movers.size == 0:
            continue
        used = np.zeros(K, dtype=bool)
        used[codes[members[~mover[members]], -1]] = True
        free = np.flatnonzero(~used)  # ascending; |free| = K - |kept| >= |movers|
        out[movers, -1] = free[_greedy_assign(cost[np.ix_(movers, free)])]
    return out


def ensure_unique(codes: np.ndarray) -> None:
    """Final guard: raise SgrecError if any two items still share a full code."""
    groups = collision_groups(codes)
    if groups:
        g = groups[0]
        code = tuple(int(c) for c in np.asarray(codes)[g[0]])
        shown = ", ".join(str(i) for i in g[:5]) + (", ..." if len(g) > 5 else "")
        raise SgrecError(
            f"internal check failed: semantic IDs are not unique ({len(groups)} shared codes; "
            f"e.g. items {shown} all have {code})"
        )
