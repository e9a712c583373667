"""Hybrid scoring (``GeneratorConfig.score = "hybrid"``): the beams of the SID generator and
the top items of the model's own dense head (or, with ``dense`` given, of another model's
distribution over the catalogue: ``@ranker`` scoring passes the run's SASRec), ranked together by

    score(i) = (1 - w) * log p_gen(i) + w * log p_dense(i)

where ``log p_gen`` is the item's SID log-probability (the sum of its L token log-probs, each
normalised as decoding sees it) and ``log p_dense`` the dense head's log-softmax over the whole
catalogue (generator/model.py). A beam keeps the ``log p_gen`` the search computed; a candidate
only the dense head proposed gets the same sum by teacher forcing (``sid_log_probs``), so it is
scored like a beam one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .beam import NEG_INF, constrained_beam_search, level_log_probs
from .beamstep import BeamDecoder
from .tokens import DECODER_START, SidVocab
from .trie import SidTrie


def hybrid_scores(gen_lp: torch.Tensor, dense_lp: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * gen_lp + weight * dense_lp``, elementwise; -inf stays -inf."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if weight == 0.0:
        return gen_lp.clone()
    if weight == 1.0:
        return dense_lp.clone()
    return (1.0 - weight) * gen_lp + weight * dense_lp


@torch.no_grad()
def sid_log_probs(model, hidden: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor,
                  vocab: SidVocab) -> torch.Tensor:
    """(B, C) log p_gen of C candidate SIDs per user, ``tokens`` (B, C, L) token ids, given
    encoder states (B, S, D): the candidates are decoded side by side like beams."""
    dec = BeamDecoder(model)
    dec.start(hidden, mask)
    batch, n_cand, _ = tokens.shape
    feed = torch.full((batch, n_cand), DECODER_START, dtype=torch.long, device=tokens.device)
    total = torch.zeros((batch, n_cand), device=tokens.device)
    for level in range(vocab.num_levels):
        lp = level_log_probs(dec.step(feed), vocab, level)  # (B, C, K)
        start, _ = vocab.level_range(level)
        total += lp.gather(2, (tokens[:, :, level] - start)[:, :, None])[:, :, 0]
        feed = tokens[:, :, level]
    return total


@torch.no_grad()
def hybrid_candidates(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      trie: SidTrie, vocab: SidVocab, num_beams: int, *,
                      exclude: Sequence[Sequence[int]] | None = None,
                      dense: torch.Tensor | None = None, item_tokens: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user's candidates and both halves of their score, for any weight:
    ``(items, log p_gen, log p_dense, ok)``, each (B, C). Candidates: the ``num_beams`` beams,
    then the dense head's ``num_beams`` best items (``exclude``: per user, items the dense head
    may not propose, e.g. the history); ``ok`` is False on empty beams and on a dense item
    already among the beams (its first copy is kept). ``dense``: (B, N) log-probabilities
    over the catalogue to use instead of the model's dense head; ``item_tokens``: (N, L) the
    items' SID tokens, for a model that holds no table of them."""
    hidden = model.encode(input_ids, attention_mask)  # read by all three parts below
    beam_items, beam_lp = constrained_beam_search(model, input_ids, attention_mask, trie, vocab,
                                                  num_beams, hidden=hidden)  # (B, nb)
    if dense is None:
        dense = model.dense_log_probs(hidden, attention_mask)  # (B, N)
    tokens = model.item_tokens if item_tokens is None else item_tokens
    blocked = dense.clone()
    if exclude is not None:
        for b, seen in enumerate(exclude):
            if len(seen):
                blocked[b, torch.as_tensor(list(seen), dtype=torch.long,
                                           device=dense.device)] = NEG_INF
    n_dense = min(num_beams, dense.shape[1])
    dense_items = blocked.topk(n_dense, dim=1).indices  # (B, nd)
    cand = torch.cat([beam_items, dense_items], dim=1)  # (B, C)
    same = cand[:, :, None] == cand[:, None, :]
    earlier = torch.ones(cand.shape[1], cand.shape[1], dtype=torch.bool,
                         device=cand.device).tril(-1)
    dup = (same & earlier).any(dim=2)
    ok = (cand >= 0) & ~dup
    gen = torch.cat([beam_lp.to(dense.dtype), sid_log_probs(
        model, hidden, attention_mask, tokens[dense_items], vocab)], dim=1)
    return cand, gen, dense.gather(1, cand.clamp(min=0)), ok


def rank_candidates(items: torch.Tensor, gen: torch.Tensor, dense: torch.Tensor,
                    ok: torch.Tensor, weight: float, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The best ``k`` of ``hybrid_candidates``' candidates by ``hybrid_scores`` at ``weight``:
    (B, k) items and scores, best first; -1 / -inf where fewer candidates exist."""
    score = torch.where(ok, hybrid_scores(gen, dense, weight), NEG_INF)
    n = min(k, items.shape[1])
    top, order = score.topk(n, dim=1)
    out = torch.where(torch.isfinite(top), items.gather(1, order), -1)
    if n < k:
        pad = k - n
        out = torch.cat([out, out.new_full((out.shape[0], pad), -1)], 1)
        top = torch.cat([top, top.new_full((top.shape[0], pad), NEG_INF)], 1)
    return out, top


@torch.no_grad()
def hybrid_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, trie: SidTrie,
                  vocab: SidVocab, num_beams: int, *, topk: int | None = None,
                  weight: float | None = None,
                  exclude: Sequence[Sequence[int]] | None = None,
                  dense: torch.Tensor | None = None, item_tokens: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``topk`` (default ``num_beams``) items per user by the hybrid score, (B, k) items
    and scores, best first; -1 / -inf where fewer candidates exist. Candidates: see
    ``hybrid_candidates`` (``dense``, ``item_tokens``: see there). ``weight``: default the
    model's ``hybrid_weight``."""
    k_out = num_beams if topk is None else topk
    w = model.gen.hybrid_weight if weight is None else weight
    cand = hybrid_candidates(model, input_ids, attention_mask, trie, vocab, num_beams,
                             exclude=exclude, dense=dense, item_tokens=item_tokens)
    return rank_candidates(*cand, w, k_out)
