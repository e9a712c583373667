"""Trie-constrained beam search over SIDs, batched over users x beams.

Every step is a handful of tensor ops for the whole batch: the trie's dense child table says
which codes each beam may take, so there is no per-beam Python callback (which is what
``prefix_allowed_tokens_fn`` costs in ``model.generate``), and the decoder step
(``beamstep.BeamDecoder``) lets the beams of a user share its encoder states instead of copying
them per beam. Since a SID has a fixed length L, all hypotheses have L tokens and a beam's score
is simply the sum of its token log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import T5ForConditionalGeneration

from .beamstep import BeamDecoder
from .tokens import DECODER_START, PAD, SidVocab
from .trie import SidTrie

NEG_INF = float("-inf")


def _check(trie: SidTrie, vocab: SidVocab, num_beams: int) -> None:
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if list(trie.codebook_sizes) != list(vocab.codebook_sizes):
        raise ValueError("trie and vocab have different codebook sizes")


def level_log_probs(logits: torch.Tensor, vocab: SidVocab, level: int) -> torch.Tensor:
    """(..., V) next-token logits -> (..., K_level) log-probs, normalised over the full vocab
    (as ``generate`` does), then restricted to the level's token range."""
    start, stop = vocab.level_range(level)
    return torch.log_softmax(logits.float(), dim=-1)[..., start:stop]


@torch.no_grad()
def constrained_beam_search(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: SidTrie,
    vocab: SidVocab,
    num_beams: int,
    *,
    topk: int | None = None,
    sample: torch.Generator | None = None,
    temperature: float = 1.0,
    trace: list[torch.Tensor] | None = None,
    hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``topk`` (default ``num_beams``) catalogue items per user by SID log-probability.

    Returns ``items`` LongTensor (B, k) and ``scores`` FloatTensor (B, k), sorted by score
    descending. Items are distinct (each beam is a distinct trie prefix) and always in the
    catalogue; when fewer than k items are reachable, the tail is ``-1`` with score ``-inf``.

    ``sample`` (a torch.Generator on the model's device) turns the search into stochastic beam
    search (Kool et al., 2019, Gumbel-top-k): the k items are then a sample *without
    replacement* from the model's item distribution at ``temperature`` (the logits divided by
    it), still distinct and in the catalogue. Each hypothesis carries a Gumbel key perturbed
    from its parent's, conditioned on the parent's key being the maximum of its children's:
    ``key_c = -log(exp(-key_parent) - exp(-Z) + exp(-g_c))`` with ``g_c = phi_c + Gumbel`` and
    ``Z = max_c g_c``; the top-k keys at the last level are the sample. ``scores`` stay the
    model's log-probabilities (temperature 1), and the output is sorted by them.

    ``trace``: a list that receives, after each level l, the trie nodes of the beams (B, nb)
    at depth l + 1 (-1 for a dead beam): where a target falls out of the beam (diagnose.py).
    """
    _check(trie, vocab, num_beams)
    k_out = num_beams if topk is None else topk
    if not 1 <= k_out <= num_beams:
        raise ValueError(f"topk must be in 1..num_beams={num_beams}, got {topk}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    model.eval()
    device = input_ids.device
    trie = trie.to(device)
    if hidden is None:  # ``hidden``: the encoder states, when the caller has them already
        hidden = model.encode(input_ids, attention_mask)
    dec = BeamDecoder(model)
    dec.start(hidden, attention_mask)  # (B, S, D): read by every beam of a user, never copied

    # Level 0 starts from one live row per user: every beam begins with the same empty prefix.
    batch = input_ids.shape[0]
    tokens = torch.full((batch, 1), DECODER_START, dtype=torch.long, device=device)
    zeros = torch.zeros((batch, 1), device=device)
    beams = _Beams(zeros, torch.zeros((batch, 1), dtype=torch.long, device=device),
                   *((zeros, zeros) if sample is not None else (None, None)))
    parent = None
    for level in range(vocab.num_levels):
        logits = dec.step(tokens, parent)
        beams, parent, tokens = _extend(beams, logits, trie, vocab, level, num_beams, sample,
                                        temperature)
        if trace is not None:
            trace.append(beams.node.clone())

    node = beams.node
    items = torch.where(node >= 0, trie.leaf_item[node.clamp(min=0)], -1)
    items, scores = items[:, :k_out], beams.scores[:, :k_out]
    if sample is not None:  # the sample, ordered like a beam: by the model's log-probability
        scores, order = scores.sort(dim=1, descending=True)
        items = items.gather(1, order)
    return items, scores


@dataclass
class _Beams:
    """The live hypotheses of every user, (B, n) each: score (sum of log-probs), trie node (-1:
    dead) and, when sampling, the tempered log-prob ``phi`` and the Gumbel ``key``."""

    scores: torch.Tensor
    node: torch.Tensor
    phi: torch.Tensor | None = None
    key: torch.Tensor | None = None


def _extend(beams: _Beams, logits: torch.Tensor, trie: SidTrie, vocab: SidVocab, level: int,
            nb: int, sample: torch.Generator | None, temperature: float
            ) -> tuple[_Beams, torch.Tensor, torch.Tensor]:
    """One level: every live beam x every valid code, the best ``nb`` kept (by score, or by
    Gumbel key when sampling). Returns (the new beams, each one's parent row (B, nb), the
    tokens the decoder reads next (B, nb))."""
    k = vocab.codebook_sizes[level]
    batch = beams.scores.shape[0]
    lp = level_log_probs(logits, vocab, level)  # (B, n_live, K)
    child = trie.child[level][beams.node.clamp(min=0)]  # (B, n_live, K)
    valid = (child >= 0) & (beams.node >= 0)[:, :, None]
    cand = torch.where(valid, beams.scores[:, :, None] + lp, NEG_INF).flatten(1)  # (B, n*K)
    rank_by, phi = cand, None
    if sample is not None:
        lp_t = lp if temperature == 1.0 else level_log_probs(logits / temperature, vocab, level)
        phi_c = torch.where(valid, beams.phi[:, :, None] + lp_t, NEG_INF)  # (B, n_live, K)
        phi, rank_by = phi_c.flatten(1), _gumbel_children(phi_c, beams.key, sample).flatten(1)
    if cand.shape[1] < nb:  # fewer candidates than beams: pad with dead ones
        pad = cand.new_full((batch, nb - cand.shape[1]), NEG_INF)
        cand, rank_by = torch.cat([cand, pad], 1), torch.cat([rank_by, pad], 1)
        if phi is not None:
            phi = torch.cat([phi, pad], 1)
    top, flat = rank_by.topk(nb, dim=1)  # (B, nb) over live beams x codes
    scores = cand.gather(1, flat)
    key, phi = (top, phi.gather(1, flat)) if phi is not None else (None, None)
    flat = flat.clamp(max=child.shape[1] * k - 1)
    parent, code = flat // k, flat % k
    node = torch.where(torch.isfinite(scores), child.flatten(1).gather(1, flat), -1)
    # a dead beam feeds PAD; its score stays -inf
    tokens = torch.where(node >= 0, code + vocab.offsets[level], PAD)
    return _Beams(scores, node, phi, key), parent, tokens


def _gumbel_children(phi: torch.Tensor, key: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gumbel keys (B, n, K) of the children of n prefixes whose keys are ``key`` (B, n), given
    the children's tempered log-probs ``phi`` (-inf = not allowed): each child's Gumbel(phi) is
    drawn, then shifted so the children's maximum equals the parent's key (Kool et al., eq. 23,
    in the numerically stable form of their appendix)."""
    u = torch.rand(phi.shape, generator=gen, device=phi.device).clamp_(1e-20, 1.0 - 1e-7)
    g = phi - torch.log(-torch.log(u))  # (B, n, K) ~ Gumbel(phi); -inf stays -inf
    z = g.max(dim=2, keepdim=True).values  # (B, n, 1)
    t = key[:, :, None]
    v = t - g + torch.log1p(-torch.exp(g - z))  # log1mexp; = +inf at -inf children
    out = t - torch.relu(v) - torch.log1p(torch.exp(-v.abs()))
    dead = ~torch.isfinite(g) | ~torch.isfinite(t)
    return torch.where(dead, NEG_INF, out)
