"""Semantic-ID statistics: codebook usage, prefix collisions, label coherence, reconstruction.

All results are plain Python ints/floats (or None where undefined) so they go straight to JSON.
"""

from __future__ import annotations

import numpy as np

from .dedup import as_codes, collision_rate


def level_usage(codes: np.ndarray, K: int) -> list[dict]:
    """Per level l: used codes, utilisation = used / K, entropy and perplexity of c_l.

    With p_k = #{i : c_l(i) = k} / N over all items (the marginal of level l),
    H = -sum_k p_k log2 p_k (bits, 0 log 0 = 0) and perplexity = 2^H, which lies in [1, used].
    """
    codes = as_codes(codes)
    n, depth = codes.shape
    if n and codes.max() >= K:
        raise ValueError(f"codes must be < K = {K}, got {codes.max()}")
    rows = []
    for level in range(depth):
        counts = np.bincount(codes[:, level], minlength=K)  # (K,)
        p = counts[counts > 0] / max(n, 1)
        entropy = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
        rows.append({
            "level": level + 1,
            "used": int(p.size),
            "utilisation": p.size / K,
            "entropy_bits": entropy,
            "perplexity": float(2.0**entropy),
        })
    return rows


def prefix_collision_rates(codes: np.ndarray) -> list[float]:
    """[collision_rate(codes[:, :l]) for l = 1..L]: non-increasing in l."""
    codes = as_codes(codes)
    return [collision_rate(codes[:, :level]) for level in range(1, codes.shape[1] + 1)]


def _pairs(counts: np.ndarray) -> int:
    """sum_j C(n_j, 2) = sum_j n_j (n_j - 1) / 2."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def semantic_coherence(level1: np.ndarray, labels: list[str | None]) -> dict:
    """Do items sharing a level-1 code share a label more often than random pairs? Exact counts.

    Over labelled items only (label None is ignored), with n_{c,y} items of code c and label y:
    p_same_code = sum_c sum_y C(n_{c,y}, 2) / sum_c C(n_c, 2),
    p_random    = sum_y C(n_y, 2) / C(n, 2),
    lift        = p_same_code / p_random.
    A probability with no pairs to count, and a lift with a zero or undefined part, is None.
    """
    level1 = np.asarray(level1).reshape(-1)
    if len(labels) != level1.shape[0]:
        raise ValueError(f"{level1.shape[0]} codes but {len(labels)} labels")
    keep = np.array([y is not None for y in labels], dtype=bool)
    names = sorted({y for y in labels if y is not None})
    label_id = {y: j for j, y in enumerate(names)}
    y = np.array([label_id[v] for v in labels if v is not None], dtype=np.int64)  # (n,)
    c = level1[keep].astype(np.int64)  # (n,)
    n = int(y.size)

    _, code_counts = np.unique(c, return_counts=True)
    _, joint_counts = np.unique(np.stack([c, y], axis=1), axis=0, return_counts=True)
    pairs_same_code = _pairs(code_counts)
    p_same_code = _pairs(joint_counts) / pairs_same_code if pairs_same_code else None
    all_pairs = n * (n - 1) // 2
    p_random = _pairs(np.bincount(y)) / all_pairs if all_pairs else None
    lift = p_same_code / p_random if p_same_code is not None and p_random else None
    return {
        "pairs_same_code": pairs_same_code,
        "p_same_label_same_code": p_same_code,
        "p_same_label_random": p_random,
        "lift": lift,
        "labelled_items": n,
    }


def _sq_errors(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """||x_i - x_hat_i||^2 per item: (N, D), (N, D) -> (N,)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape or x.ndim != 2:
        raise ValueError(f"x and x_hat must both be (N, D), got {x.shape} and {x_hat.shape}")
    return ((x - x_hat) ** 2).sum(axis=1)


def reconstruction_mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    """(1/N) sum_i ||x_i - x_hat_i||^2 (per item, summed over dimensions); 0.0 for no items."""
    err = _sq_errors(x, x_hat)
    return float(err.mean()) if err.size else 0.0


def relative_reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """sum_i ||x_i - x_hat_i||^2 / sum_i ||x_i - mean(x)||^2: 1.0 = as bad as predicting the mean.

    With zero spread in x the ratio is 0.0 for an exact reconstruction and inf otherwise.
    """
    err = float(_sq_errors(x, x_hat).sum())
    x = np.asarray(x, dtype=np.float64)
    spread = float(((x - x.mean(axis=0)) ** 2).sum()) if x.size else 0.0
    if spread == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return err / spread
