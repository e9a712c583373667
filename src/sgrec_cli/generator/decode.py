"""Decoding a trained generator: top-K items by trie-constrained beam search (pure generator,
hybrid scoring, or fused with a ranking model), history exclusion, and the hybrid weight's
validation curve. Nothing here reads a run directory (``store.py`` loads a run's generator)
or trains.

Histories are item indices (oldest first). ``exclude_history`` leaves the user's own history
items out (the evaluation protocol: the datasets here have no repeat purchases, so a history
item can never be the target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..names import RANKER_WEIGHT, SCORINGS, resolve_decode


@dataclass(frozen=True)
class Ranker:
    """A ranking model for ``ranker`` scoring: ``log_probs(histories)`` -> (B, N) tensor of
    log p(item | history) over the catalogue, and its share ``weight`` of the fused score."""

    log_probs: Callable[[Sequence[Sequence[int]]], Any]
    weight: float = RANKER_WEIGHT


# the memory one batch of decoding may take: users are batched to stay under it
DECODE_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class LoadedGenerator:
    """A trained generator (SFT or an A2PO fine-tune) ready for decoding."""

    model: Any  # T5ForConditionalGeneration in eval mode
    vocab: Any  # SidVocab
    trie: Any  # SidTrie of the run's SIDs
    codes: np.ndarray  # (N, L) item SIDs, row i = item index i
    max_history: int  # history items the model reads (RUN/data's max history)


def score_mode(model, score: str | None, ranker: Ranker | None = None) -> str:
    """The scoring a generator is asked for: ``score``, or its own (config) when None; hybrid
    needs a model trained with the dense head, ranker a ``Ranker``."""
    mode = model.gen.score if score is None else score
    if mode not in SCORINGS:
        raise ConfigError(f"score {mode!r} is not known; use one of {', '.join(SCORINGS)}")
    if mode == "hybrid" and not model.hybrid:
        raise ConfigError("hybrid scoring needs a generator trained with a dense head "
                          "(sgrec train --score hybrid); this one has none")
    if mode == "ranker" and ranker is None:
        raise ConfigError("ranker scoring needs a ranking model (the run's SASRec: sgrec train "
                          "--model sasrec)")
    return mode


def search_width(mode: str, num_beams: int, k: int, n_items: int, widen: int = 0) -> int:
    """The beams a search of ``mode`` keeps: exhaustive keeps every prefix (the catalogue
    size bounds the prefixes of any level, so nothing is pruned and the scores are exact);
    beam keeps ``max(num_beams, k) + widen``, at most the catalogue."""
    if resolve_decode(mode, n_items) == "exhaustive":
        return n_items
    return min(max(num_beams, k) + widen, n_items)


def bytes_per_user(model, vocab, num_beams: int, history: int, n_items: int = 0,
                   dense: bool = False) -> int:
    """A bound on what decoding one user with ``num_beams`` beams allocates at its widest
    level: the logits and their log-softmax (V each), the candidate scores, trie children and
    masks (K_max each, in several copies), the decoder's activations and caches, and with the
    dense head (or a ranker, ``dense``) its catalogue scores. Measured against the process's
    peak memory in ``tests/test_decode_modes.py``."""
    cfg = model.config
    v, k = vocab.vocab_size, max(vocab.codebook_sizes)
    levels, d, ff = vocab.num_levels, cfg.d_model, cfg.d_ff
    # float32 throughout; the factor 2 covers the allocator's slack and transient copies
    per_beam = 8 * (3 * v + 8 * k + 2 * ff + 4 * d + cfg.num_heads * history
                    + 2 * cfg.num_decoder_layers * levels * d)
    catalogue = 16 * n_items if dense or getattr(model, "hybrid", False) else 0
    return num_beams * per_beam + catalogue + 8 * cfg.num_layers * history * d


def users_per_batch(model, vocab, num_beams: int, history: int, requested: int, *,
                    n_items: int = 0, budget: int | None = None, dense: bool = False) -> int:
    """Users decoded at once: at most ``requested``, and few enough that the batch stays under
    ``budget`` bytes (default ``DECODE_MEMORY_BYTES``); one line of ConfigError when even one
    user would not."""
    budget = DECODE_MEMORY_BYTES if budget is None else budget
    need = bytes_per_user(model, vocab, num_beams, history, n_items, dense)
    if need > budget:
        raise ConfigError(f"decoding {num_beams:,} beams needs about {need / 2**30:.1f} GiB "
                          f"per user, over the {budget / 2**30:.1f} GiB decoding budget; use "
                          "fewer --num-beams (or --decode beam)")
    return max(1, min(requested, budget // need))


def predict_topk(model, vocab, trie, histories: Sequence[Sequence[int]], codes: np.ndarray,
                 k: int, num_beams: int, *, batch: int = 256, max_history: int | None = None,
                 with_scores: bool = False, score: str | None = None,
                 exclude_history: bool = False, keep: int | None = None,
                 ranker: Ranker | None = None
                 ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k item indices per user, (U, k) int64, best first, by constrained beam search.

    Items are distinct catalogue items; ``-1`` fills slots when fewer than k are reachable.
    ``max_history`` keeps only the most recent items of each history (default: all of them).
    ``score``: generator (SID log-probability) or hybrid (generator/hybrid.py; the model needs
    its dense head); default the model's own ``score``. ``exclude_history``: the hybrid's dense
    candidates leave out history items (beams are filtered by the caller, ``drop_seen``).
    ``with_scores`` also returns the scores, (U, k) float32 (-inf on empty slots). ``keep``:
    each batch's rows lose their history items (``drop_seen``) and are cut to ``keep`` items
    before the next batch, so that the result is (U, keep) however wide the search.
    ``ranker`` (score ranker): the beams and the ranker's own best items, ranked by the hybrid
    score with the ranker's log-probabilities in the dense head's place, at its weight.
    """
    import torch

    from .beam import constrained_beam_search
    from .hybrid import hybrid_search

    score = score_mode(model, score, ranker)
    device = next(model.parameters()).device
    batch = _bounded_batch(model, vocab, histories, num_beams, batch, max_history, codes,
                           fused=score != "generator")
    tokens = _item_tokens(model, vocab, codes, device) if score == "ranker" else None
    n_users = len(histories)
    width = k if keep is None else keep
    out = np.full((n_users, width), -1, dtype=np.int64)
    out_scores = np.full((n_users, width), -np.inf, dtype=np.float32)
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            if score == "hybrid":
                seen = [histories[i] for i in rows] if exclude_history else None
                items, scores = hybrid_search(model, ids.to(device), mask.to(device), trie,
                                              vocab, num_beams, topk=k, exclude=seen)
            elif score == "ranker":
                users = [histories[i] for i in rows]
                items, scores = hybrid_search(
                    model, ids.to(device), mask.to(device), trie, vocab, num_beams, topk=k,
                    weight=ranker.weight, exclude=users if exclude_history else None,
                    dense=ranker.log_probs(users).to(device), item_tokens=tokens)
            else:
                items, scores = constrained_beam_search(
                    model, ids.to(device), mask.to(device), trie, vocab, num_beams, topk=k)
            items, scores = items.cpu().numpy(), scores.float().cpu().numpy()
            if keep is not None:
                items, scores = drop_seen(items, scores, [histories[i] for i in rows], keep)
            out[rows], out_scores[rows] = items, scores
    return (out, out_scores) if with_scores else out


def _item_tokens(model, vocab, codes: np.ndarray, device):
    """(N, L) the items' SID tokens, for teacher-forcing a ranker's candidates: the model's own
    table when it holds one (item inputs), otherwise built from ``codes``."""
    import torch

    if hasattr(model, "item_tokens"):
        return model.item_tokens
    return torch.as_tensor(vocab.code_tokens(np.asarray(codes)), device=device)


def _bounded_batch(model, vocab, histories, num_beams: int, batch: int,
                   max_history: int | None, codes: np.ndarray, fused: bool = False) -> int:
    """``fused``: the search also scores a dense head's or a ranker's candidates."""
    longest = max((len(h) for h in histories), default=1)
    read = longest if max_history is None else min(longest, max_history)
    if not model.per_item:
        read = read * vocab.num_levels + 1
    # the hybrid also scores the dense head's num_beams candidates: twice the beams' rows
    fused = fused or getattr(model, "hybrid", False)
    width = 2 * num_beams if fused else num_beams
    return users_per_batch(model, vocab, width, max(1, read), batch, n_items=len(codes),
                           dense=fused)


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
                        grid: Sequence[float] = HYBRID_WEIGHT_GRID,
                        ranker: Ranker | None = None) -> dict[float, float]:
    """Mean NDCG@k of a hybrid model's recommendations (as ``predict_topk`` makes them, the
    user's history items excluded, then ``drop_seen``) for each weight of ``grid``:
    {weight: NDCG@k}; with ``ranker``, of the generator fused with it (its weight unused).
    The candidates and both halves of their score do not depend on the weight, so they are
    computed once (generator/hybrid.py)."""
    import torch

    from ..eval.metrics import ndcg_gains, ranks_of_targets
    from .hybrid import hybrid_candidates, rank_candidates

    # refuses a model without a dense head (or a ranker)
    score_mode(model, "hybrid" if ranker is None else "ranker", ranker)
    device = next(model.parameters()).device
    batch = _bounded_batch(model, vocab, histories, num_beams, batch, max_history, codes,
                           fused=True)
    tokens = None if ranker is None else _item_tokens(model, vocab, codes, device)
    tops = {w: np.full((len(histories), k), -1, dtype=np.int64) for w in grid}
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            seen = [histories[i] for i in rows]
            dense = None if ranker is None else ranker.log_probs(seen).to(device)
            cand = hybrid_candidates(model, ids.to(device), mask.to(device), trie, vocab,
                                     num_beams, exclude=seen, dense=dense, item_tokens=tokens)
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
                   score: str | None = None, ranker: Ranker | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) (U, k): the first ``k`` of the ``num_beams`` best items (``predict_topk``,
    history excluded from the hybrid's dense candidates) that are not in the user's history;
    -1 / -inf fill a row with fewer left."""
    return predict_topk(model, vocab, trie, histories, codes, num_beams, num_beams=num_beams,
                        batch=batch, max_history=max_history, with_scores=True, score=score,
                        exclude_history=True, keep=k, ranker=ranker)


def generator_top_items(gen: LoadedGenerator, histories: Sequence[Sequence[int]], k: int,
                        num_beams: int, *, exclude_history: bool = True,
                        fill: bool = False, score: str | None = None, decode: str = "beam",
                        ranker: Ranker | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The generator's (items, scores) (U, k), best first. ``decode`` beam: ``num_beams``
    beams are searched; ``fill`` widens the search by the longest history so that k items
    remain after history items are dropped, while without it a dropped beam leaves an empty
    slot. exhaustive: every item is scored (``search_width``), so the top k are exact and
    always filled; auto: exhaustive on small catalogues. ``score``: generator, hybrid or
    ranker (with ``ranker``; default: the model's own, ``score_mode``)."""
    longest = max((len(h) for h in histories), default=0)
    beams = search_width(decode, num_beams, k, gen.codes.shape[0],
                         longest if fill and exclude_history else 0)
    if exclude_history:
        return predict_unseen(gen.model, gen.vocab, gen.trie, histories, gen.codes, k, beams,
                              max_history=gen.max_history, score=score, ranker=ranker)
    return predict_topk(gen.model, gen.vocab, gen.trie, histories, gen.codes, min(k, beams),
                        num_beams=beams, max_history=gen.max_history, with_scores=True,
                        score=score, ranker=ranker)
