"""Collaborative item vectors for the SID tokenizer (``build-sids --collab-dim D``).

Two sources (``--collab-source``), both learned from the *training* split only:

- ``cooc`` (default, :func:`collaborative_vectors`): co-occurrence, as below.
- ``sasrec`` (:func:`table_vectors`): the item table of the run's SASRec baseline
  (RUN/sasrec, trained on the training split with tied input/output item embeddings).

Items bought close together in the *training* part of the sequences (every user's sequence
without its last two items, which are validation and test) get close vectors: the positive
pointwise mutual information of co-occurrence within ``window`` steps, factorised by a
truncated SVD (``U sqrt(S)``, rows L2-normalised). Items that never co-occur get a zero vector
and are quantised by their text alone. The tokenizer then reads ``[text, weight * collab]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

HELD_OUT = 2  # the validation and test items at the end of every sequence


def cooccurrence_counts(sequences: Sequence[Sequence[int]], n_items: int,
                        window: int) -> dict[tuple[int, int], float]:
    """Symmetric counts {(i, j): c} of items within ``window`` steps of each other in the
    training part of each sequence (i != j; a pair counted once per occurrence)."""
    counts: dict[tuple[int, int], float] = {}
    for seq in sequences:
        train = [int(i) for i in seq[: max(0, len(seq) - HELD_OUT)]]
        for a, i in enumerate(train):
            for j in train[a + 1 : a + 1 + window]:
                if i != j:
                    for key in ((i, j), (j, i)):
                        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


def ppmi(counts: dict[tuple[int, int], float], n_items: int) -> torch.Tensor:
    """Sparse (N, N) positive PMI matrix of the counts."""
    if not counts:
        return torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0),
                                       (n_items, n_items))
    idx = np.array(list(counts.keys()), dtype=np.int64)  # (P, 2)
    val = np.array(list(counts.values()), dtype=np.float64)
    row_sum = np.bincount(idx[:, 0], weights=val, minlength=n_items)
    total = val.sum()
    pmi = np.log(val * total / (row_sum[idx[:, 0]] * row_sum[idx[:, 1]]))
    keep = pmi > 0
    return torch.sparse_coo_tensor(torch.from_numpy(idx[keep].T),
                                   torch.from_numpy(pmi[keep]).float(), (n_items, n_items),
                                   check_invariants=True)


def collaborative_vectors(sequences: Sequence[Sequence[int]], n_items: int, dim: int, *,
                          window: int = 3, seed: int = 0) -> np.ndarray:
    """(N, dim) float32 item vectors (see the module doc); rows of unit norm or zero."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    m = ppmi(cooccurrence_counts(sequences, n_items, window), n_items).coalesce()
    out = np.zeros((n_items, dim), dtype=np.float32)
    if m.values().numel() == 0:
        return out
    q = min(dim, n_items)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        u, s, _ = torch.svd_lowrank(m, q=q, niter=6)
    finally:
        torch.random.set_rng_state(gen_state)
    vec = (u * s.clamp(min=0).sqrt()).numpy()
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    out[:, :q] = np.where(norm > 1e-8, vec / np.maximum(norm, 1e-12), 0.0)
    return out


def table_vectors(table: np.ndarray, dim: int) -> np.ndarray:
    """(N, dim) float32 item vectors from a learned item table (N, H), e.g. SASRec's.

    The table is centred and projected on its top ``min(dim, H)`` principal directions (later
    columns stay zero), then scaled by one factor so that the mean row norm is 1. Rows are not
    normalised one by one: items the model rarely saw keep short vectors (their rows barely
    left their small initialisation) and are quantised mostly by their text.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or not len(t):
        raise ValueError(f"an item table must be a non-empty (N, H) matrix, got shape {t.shape}")
    centred = t - t.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    q = min(dim, vt.shape[0])
    proj = centred @ vt[:q].T
    mean_norm = float(np.linalg.norm(proj, axis=1).mean())
    out = np.zeros((len(t), dim), dtype=np.float32)
    if mean_norm > 1e-12:
        out[:, :q] = proj / mean_norm
    return out
