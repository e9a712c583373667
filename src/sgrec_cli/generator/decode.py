"""Decoding a trained generator: top-K items by trie-constrained beam search (pure generator or
hybrid scoring), history exclusion, and the hybrid weight's validation curve. Nothing here
reads a run directory (``store.py`` loads a run's generator) or trains.

Histories are item indices (oldest first). ``exclude_history`` leaves the user's own history
items out (the evaluation protocol: the datasets here have no repeat purchases, so a history
item can never be the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..names import SCORINGS


@dataclass(frozen=True)
class LoadedGenerator:
    """A trained generator (SFT or an A2PO fine-tune) ready for decoding."""

    model: Any  # T5ForConditionalGeneration in eval mode
    vocab: Any  # SidVocab
    trie: Any  # SidTrie of the run's SIDs
    codes: np.ndarray  # (N, L) item SIDs, row i = item index i
    max_history: int  # history items the model reads (RUN/data's max history)


def score_mode(model, score: str | None) -> str:
    """The scoring a generator is asked for: ``score``, or its own (config) when None; hybrid
    needs a model trained with the dense head."""
    mode = model.gen.score if score is None else score
    if mode not in SCORINGS:
        raise ConfigError(f"score {mode!r} is not known; use one of {', '.join(SCORINGS)}")
    if mode == "hybrid" and not model.hybrid:
        raise ConfigError("hybrid scoring needs a generator trained with a dense head "
                          "(sgrec train --score hybrid); this one has none")
    return mode


def predict_topk(model, vocab, trie, histories: Sequence[Sequence[int]], codes: np.ndarray,
                 k: int, num_beams: int, *, batch: int = 256, max_history: int | None = None,
                 with_scores: bool = False, score: str | None = None,
                 exclude_history: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k item indices per user, (U, k) int64, best first, by constrained beam search.

    Items are distinct catalogue items; ``-1`` fills slots when fewer than k are reachable.
    ``max_history`` keeps only the most recent items of each history (default: all of them).
    ``score``: generator (SID log-probability) or hybrid (generator/hybrid.py; the model needs
    its dense head); default the model's own ``score``. ``exclude_history``: the hybrid's dense
    candidates leave out history items (beams are filtered by the caller, ``drop_seen``).
    ``with_scores`` also returns the scores, (U, k) float32 (-inf on empty slots).
    """
    import torch

    from .beam import constrained_beam_search
    from .hybrid import hybrid_search

    score = score_mode(model, score)
    device = next(model.parameters()).device
    n_users = len(histories)
    out = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            if score == "hybrid":
                seen = [histories[i] for i in rows] if exclude_history else None
                items, scores = hybrid_search(model, ids.to(device), mask.to(device), trie,
                                              vocab, num_beams, topk=k, exclude=seen)
            else:
                items, scores = constrained_beam_search(
                    model, ids.to(device), mask.to(device), trie, vocab, num_beams, topk=k)
            out[rows] = items.cpu().numpy()
            out_scores[rows] = scores.float().cpu().numpy()
    return (out, out_scores) if with_scores else out


def _user_batches(model, vocab, histories: Sequence[Sequence[int]], codes: np.ndarray,
                  batch: int, max_history: int | None):
    """Yield ``(rows, input_ids, attention_mask)`` over the users, ``batch`` at a time, in
    order of history length (batches of alike lengths pad less; ``rows`` says where each
    user's results go); ``max_history`` keeps the most recent items (default: all)."""
    if batch < 1:
        raise ConfigError(f"batch {batch!r} must be >= 1")
    longest = max((len(h) for h in histories), default=1)
    keep = max(1, longest if max_history is None else max_history)
    order = np.argsort([-min(len(h), keep) for h in histories], kind="stable")
    for start in range(0, len(histories), batch):
        rows = order[start : start + batch]
        ids, mask = vocab.encode_history([histories[i] for i in rows], codes, keep,
                                         per_item=model.per_item)
        yield rows, ids, mask


HYBRID_WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def hybrid_weight_curve(model, vocab, trie, histories: Sequence[Sequence[int]],
                        targets: Sequence[int], codes: np.ndarray, num_beams: int, *,
                        k: int = 10, batch: int = 256, max_history: int | None = None,
                        grid: Sequence[float] = HYBRID_WEIGHT_GRID) -> dict[float, float]:
    """Mean NDCG@k of a hybrid model's recommendations (as ``predict_topk`` makes them, the
    user's history items excluded, then ``drop_seen``) for each weight of ``grid``:
    {weight: NDCG@k}. The candidates and both halves of their score do not depend on the
    weight, so they are computed once (generator/hybrid.py)."""
    import torch

    from ..eval.metrics import ndcg_gains, ranks_of_targets
    from .hybrid import hybrid_candidates, rank_candidates

    score_mode(model, "hybrid")  # refuses a model without a dense head
    device = next(model.parameters()).device
    tops = {w: np.full((len(histories), k), -1, dtype=np.int64) for w in grid}
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            seen = [histories[i] for i in rows]
            cand = hybrid_candidates(model, ids.to(device), mask.to(device), trie, vocab,
                                     num_beams, exclude=seen)
            n_cand = cand[0].shape[1]
            for w in grid:
                items, scores = rank_candidates(*cand, w, n_cand)
                tops[w][rows] = drop_seen(items.cpu().numpy(), scores.float().cpu().numpy(),
                                          seen, k)[0]
    targets = np.asarray(targets, dtype=np.int64)
    return {w: float(np.mean(ndcg_gains(ranks_of_targets(top, targets), k)))
            for w, top in tops.items()}


def choose_weight(curve: dict[float, float], prefer: float) -> float:
    """The weight of ``curve`` ({weight: metric}) with the best metric; ties go to the one
    nearest ``prefer`` (then the smaller)."""
    if not curve:
        raise ValueError("no weights to choose from")
    return max(curve, key=lambda w: (curve[w], -abs(w - prefer), -w))


def drop_seen(items: np.ndarray, scores: np.ndarray, histories: Sequence[Sequence[int]],
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's history items, keep the first ``k`` of what is left (order kept).

    ``items`` (U, M) int64 with -1 for empty slots, ``scores`` (U, M). Returns (U, k) arrays;
    rows with fewer than k items left are padded with -1 / -inf.
    """
    n_users = items.shape[0]
    out = np.full((n_users, k), -1, dtype=np.int64)
    out_s = np.full((n_users, k), -np.inf, dtype=np.float32)
    for u in range(n_users):
        seen = np.asarray(list(histories[u]), dtype=np.int64)
        keep = (items[u] >= 0) & ~np.isin(items[u], seen)
        row, row_s = items[u][keep][:k], scores[u][keep][:k]
        out[u, : row.size], out_s[u, : row.size] = row, row_s
    return out, out_s


def predict_unseen(model, vocab, trie, histories: Sequence[Sequence[int]], codes: np.ndarray,
                   k: int, num_beams: int, *, batch: int = 256, max_history: int | None = None,
                   score: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) (U, k): the first ``k`` of the ``num_beams`` best items (``predict_topk``,
    history excluded from the hybrid's dense candidates) that are not in the user's history;
    -1 / -inf fill a row with fewer left."""
    items, scores = predict_topk(model, vocab, trie, histories, codes, num_beams,
                                 num_beams=num_beams, batch=batch, max_history=max_history,
                                 with_scores=True, score=score, exclude_history=True)
    return drop_seen(items, scores, histories, k)


def generator_top_items(gen: LoadedGenerator, histories: Sequence[Sequence[int]], k: int,
                        num_beams: int, *, exclude_history: bool = True,
                        fill: bool = False, score: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The generator's (items, scores) (U, k), best first. ``num_beams`` beams are searched;
    ``fill`` widens the search by the longest history so that k items remain after history
    items are dropped, while without it a dropped beam leaves an empty slot. ``score``:
    generator or hybrid (default: the model's own, ``score_mode``)."""
    longest = max((len(h) for h in histories), default=0)
    beams = max(num_beams, k) + (longest if fill and exclude_history else 0)
    beams = min(beams, gen.codes.shape[0])  # no more beams than catalogue items
    if exclude_history:
        return predict_unseen(gen.model, gen.vocab, gen.trie, histories, gen.codes, k, beams,
                              max_history=gen.max_history, score=score)
    items, scores = predict_topk(gen.model, gen.vocab, gen.trie, histories, gen.codes, beams,
                                 num_beams=beams, max_history=gen.max_history, with_scores=True,
                                 score=score)
    return items[:, :k], scores[:, :k]
