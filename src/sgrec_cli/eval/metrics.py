"""Ranking metrics for leave-one-out evaluation: one held-out target per user.

A model's output is ``topk``, an int array (U, K) of item indices, best first, where -1 marks an
empty slot (e.g. fewer valid beams than K). Metrics are computed from the 1-based rank of each
user's target in its row (0 = absent), so every metric is a mean over users of a per-user value.
Scalar results are plain Python floats so they go straight to JSON.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, SgrecError

DEFAULT_KS = (1, 5, 10, 20)


def _as_topk(topk: np.ndarray) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2 or not np.issubdtype(topk.dtype, np.integer):
        raise SgrecError(f"top-k lists must be a 2-D integer array (users, k), got "
                         f"{topk.ndim}-D {topk.dtype}")
    return topk


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise SgrecError("no users to evaluate (ranks must be a non-empty 1-D array)")
    return ranks


def ranks_of_targets(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """rank_u = 1 + min{j : topk[u, j] = t_u} (1-based), or 0 if t_u is not in row u.

    Empty slots (-1) never match, and only the first occurrence of a repeated item counts.
    """
    topk = _as_topk(topk)
    targets = np.asarray(targets)
    if targets.shape != (topk.shape[0],):
        raise SgrecError(f"{topk.shape[0]} top-k rows but targets of shape {targets.shape}")
    match = (topk == targets[:, None]) & (topk >= 0)  # (U, K)
    found = match.any(axis=1)
    return np.where(found, match.argmax(axis=1) + 1, 0).astype(np.int64)


def recall_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user: hit_u = 1[1 <= rank_u <= k] (float64)."""
    ranks, k = _as_ranks(ranks), _check_k(k)
    return ((ranks >= 1) & (ranks <= k)).astype(np.float64)


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user: 1 / log2(rank_u + 1) if 1 <= rank_u <= k else 0; IDCG = 1 (one target)."""
    ranks, k = _as_ranks(ranks), _check_k(k)
    hit = (ranks >= 1) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Recall@k = HR@k = (1/U) sum_u 1[1 <= rank_u <= k]."""
    return float(recall_hits(ranks, k).mean())


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k = (1/U) sum_u 1[1 <= rank_u <= k] / log2(rank_u + 1)."""
    return float(ndcg_gains(ranks, k).mean())


def per_user_metrics(ranks: np.ndarray, ks=DEFAULT_KS) -> dict[str, np.ndarray]:
    """{"recall@k": hit_u, "ndcg@k": gain_u} per user for each k in ks (for paired bootstraps)."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_hits(ranks, k)
        out[f"ndcg@{k}"] = ndcg_gains(ranks, k)
    return out


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over users of each per-user metric: {name: (1/U) sum_u m_u}."""
    return {name: float(np.mean(values)) for name, values in per_user.items()}


def invalid_and_duplicate_rate(topk: np.ndarray, n_items: int) -> dict[str, float]:
    """Shares of the U*K slots that are empty, invalid or duplicate.

    empty_rate = #{slots = -1} / UK; invalid_rate = #{slots not -1 and outside 0..n_items-1} / UK;
    duplicate_rate = #{valid slots whose item already appears earlier in the same row} / UK.
    The three are disjoint, so 1 - their sum is the share of slots holding a first occurrence of
    a valid item. An empty array gives 0.0 for all three.
    """
    topk = _as_topk(topk)
    total = topk.size
    if total == 0:
        return {"empty_rate": 0.0, "invalid_rate": 0.0, "duplicate_rate": 0.0}
    empty = topk == -1
    valid = (topk >= 0) & (topk < n_items)
    invalid = ~empty & ~valid
    # Repeats beyond the first occurrence = adjacent equal valid ids after sorting each row.
    s = np.sort(np.where(valid, topk, -1), axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    return {
        "empty_rate": float(empty.sum() / total),
        "invalid_rate": float(invalid.sum() / total),
        "duplicate_rate": float(dup.sum() / total),
    }


def coverage(topk: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@k = |{topk[u, j] : all u, j < k, 0 <= topk[u, j] < n_items}| / n_items."""
    topk, k = _as_topk(topk), _check_k(k)
    if n_items < 1:
        raise ConfigError(f"n_items must be positive, got {n_items}")
    head = topk[:, :k]
    return float(np.unique(head[(head >= 0) & (head < n_items)]).size / n_items)
