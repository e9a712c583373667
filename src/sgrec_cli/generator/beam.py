"""Trie-constrained beam search over SIDs, batched over users x beams.

Every step is a handful of tensor ops for the whole batch: the trie's dense child table says
which codes each beam may take, so there is no per-beam Python callback (which is what
``prefix_allowed_tokens_fn`` costs in ``model.generate``), and the decoder step
(``beamstep.BeamDecoder``) lets the beams of a user share its encoder states instead of copying
them per beam. Since a SID has a fixed length L, all hypotheses have L tokens and a beam's score
is simply the sum of its token log-probs.
"""

from __future__ import annotations

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


def _level_log_probs(logits: torch.Tensor, vocab: SidVocab, level: int) -> torch.Tensor:
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
    topk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``topk`` (default ``num_beams``) catalogue items per user by SID log-probability.

    Returns ``items`` LongTensor (B, k) and ``scores`` FloatTensor (B, k), sorted by score
    descending. Items are distinct (each beam is a distinct trie prefix) and always in the
    catalogue; when fewer than k items are reachable, the tail is ``-1`` with score ``-inf``.
    """
    _check(trie, vocab, num_beams)
    k_out = num_beams if topk is None else topk
    if not 1 <= k_out <= num_beams:
        raise ValueError(f"topk must be in 1..num_beams={num_beams}, got {topk}")
    model.eval()
    device = input_ids.device
    trie = trie.to(device)
    batch, nb = input_ids.shape[0], num_beams
    hidden = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)[0]
    dec = BeamDecoder(model)
    dec.start(hidden, attention_mask)  # (B, S, D): read by every beam of a user, never copied

    # Level 0 starts from one live row per user: every beam begins with the same empty prefix.
    tokens = torch.full((batch, 1), DECODER_START, dtype=torch.long, device=device)
    scores = torch.zeros((batch, 1), device=device)  # (B, n_live)
    node = torch.zeros((batch, 1), dtype=torch.long, device=device)  # trie node per beam
    parent = None
    for level in range(vocab.num_levels):
        k = vocab.codebook_sizes[level]
        lp = _level_log_probs(dec.step(tokens, parent), vocab, level)  # (B, n_live, K)
        child = trie.child[level][node.clamp(min=0)]  # (B, n_live, K)
        valid = (child >= 0) & (node >= 0)[:, :, None]
        cand = torch.where(valid, scores[:, :, None] + lp, NEG_INF).flatten(1)  # (B, n_live*K)
        if cand.shape[1] < nb:  # fewer candidates than beams: pad with dead ones
            cand = torch.cat([cand, cand.new_full((batch, nb - cand.shape[1]), NEG_INF)], 1)
        scores, flat = cand.topk(nb, dim=1)  # (B, nb) over live beams x codes
        flat = flat.clamp(max=child.shape[1] * k - 1)
        parent, code = flat // k, flat % k
        node = torch.where(torch.isfinite(scores), child.flatten(1).gather(1, flat), -1)
        # a dead beam feeds PAD; its score stays -inf
        tokens = torch.where(node >= 0, code + vocab.offsets[level], PAD)

    items = torch.where(node >= 0, trie.leaf_item[node.clamp(min=0)], -1)
    return items[:, :k_out], scores[:, :k_out]


def _allowed_tokens(trie: SidTrie, vocab: SidVocab) -> dict[tuple[int, ...], list[int]]:
    """Decoder prefix (start token + SID tokens so far) -> allowed next tokens, as in
    LC-Rec / MiniOneRec's ``prefix_allowed_tokens_fn`` dictionaries."""
    allowed: dict[tuple[int, ...], list[int]] = {}
    frontier = {(DECODER_START,): 0}  # prefix -> trie node
    for level, table in enumerate(trie.child):
        nxt = {}
        rows = table.cpu()
        for prefix, node in frontier.items():
            codes = torch.nonzero(rows[node] >= 0).view(-1).tolist()
            allowed[prefix] = [vocab.offsets[level] + c for c in codes]
            for c in codes:
                nxt[prefix + (vocab.offsets[level] + c,)] = int(rows[node, c])
        frontier = nxt
    return allowed


@torch.no_grad()
def hf_generate_baseline(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: SidTrie,
    vocab: SidVocab,
    num_beams: int,
    allowed: dict[tuple[int, ...], list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual recipe: ``model.generate`` beam search with ``prefix_allowed_tokens_fn``.

    ``length_penalty=0`` makes a hypothesis score its plain log-prob sum (all have L tokens
    anyway), so the ranking is comparable with ``constrained_beam_search``. Returns
    ``(items (B, num_beams), scores (B, num_beams))``; -1 / -inf for unreachable slots.
    ``allowed`` may be passed to reuse the prefix table across calls.
    """
    _check(trie, vocab, num_beams)
    model.eval()
    table = _allowed_tokens(trie, vocab) if allowed is None else allowed
    dead = [PAD]  # a prefix outside the trie only arises on a -inf beam; any token keeps it dead

    def prefix_fn(_batch_id: int, sent: torch.Tensor) -> list[int]:
        return table.get(tuple(sent.tolist()), dead)

    n_levels = vocab.num_levels
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        max_new_tokens=n_levels,
        min_new_tokens=0,
        do_sample=False,
        early_stopping=True,
        length_penalty=0.0,
        prefix_allowed_tokens_fn=prefix_fn,
        output_scores=True,
        return_dict_in_generate=True,
    )
    seqs = out.sequences[:, 1:]  # drop the decoder start token: (B*nb, <=L)
    if seqs.shape[1] < n_levels:  # a hypothesis can only be shorter if it died early
        seqs = torch.cat([seqs, seqs.new_full((seqs.shape[0], n_levels - seqs.shape[1]), -1)], 1)
    codes = seqs[:, :n_levels] - torch.tensor(vocab.offsets, device=seqs.device)
    items = trie.to(seqs.device).items_of(codes)  # (B*nb,), -1 outside the catalogue
    scores = out.sequences_scores.float()
    scores = torch.where(items >= 0, scores, NEG_INF)
    batch = input_ids.shape[0]
    return items.view(batch, num_beams), scores.view(batch, num_beams)
