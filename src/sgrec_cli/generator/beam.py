"""Trie-constrained beam search over SIDs, batched over users x beams.

Every step is a handful of tensor ops for the whole batch: the trie's dense child table says
which codes each beam may take, so there is no per-beam Python callback (which is what
``prefix_allowed_tokens_fn`` costs in ``model.generate``). Since a SID has a fixed length L,
all hypotheses have L tokens and a beam's score is simply the sum of its token log-probs.
"""

from __future__ import annotations

import torch
from transformers import T5ForConditionalGeneration

from .tokens import DECODER_START, PAD, SidVocab
from .trie import SidTrie

NEG_INF = float("-inf")


def _check(trie: SidTrie, vocab: SidVocab, num_beams: int) -> None:
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if list(trie.codebook_sizes) != list(vocab.codebook_sizes):
        raise ValueError("trie and vocab have different codebook sizes")


def _reorder_self_attention(cache, rows: torch.Tensor) -> None:
    """Point each beam at its parent's decoder cache. Parents always belong to the same user,
    whose beams share identical cross-attention keys/values, so only the self-attention half
    needs moving (reordering the cross half would copy B*nb*S*D floats per layer for nothing)."""
    self_cache = getattr(cache, "self_attention_cache", None)
    if self_cache is None:  # not an encoder-decoder cache: reorder everything
        cache.reorder_cache(rows)
    else:
        self_cache.reorder_cache(rows)


def _level_log_probs(logits: torch.Tensor, vocab: SidVocab, level: int) -> torch.Tensor:
    """(R, V) last-step logits -> (R, K_level) log-probs, normalised over the full vocab
    (as ``generate`` does), then restricted to the level's token range."""
    start, stop = vocab.level_range(level)
    return torch.log_softmax(logits.float(), dim=-1)[:, start:stop]


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
    enc = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    hidden = enc.last_hidden_state  # (B, S, D)

    # Step 0 runs on one row per user: every beam starts from the same (empty) prefix, so this
    # is the "one live beam, others -inf" start without computing the dead beams.
    start = torch.full((batch, 1), DECODER_START, dtype=torch.long, device=device)
    out = model(
        encoder_outputs=(hidden,), attention_mask=attention_mask,
        decoder_input_ids=start, use_cache=True,
    )
    cache = out.past_key_values
    lp = _level_log_probs(out.logits[:, -1], vocab, 0)  # (B, K0)
    root_child = trie.child[0][0]  # (K0,)
    cand = lp.masked_fill(root_child < 0, NEG_INF)
    if cand.shape[1] < nb:  # fewer codes than beams: pad with dead candidates
        cand = torch.cat([cand, cand.new_full((batch, nb - cand.shape[1]), NEG_INF)], dim=1)
    scores, code = cand.topk(nb, dim=1)  # (B, nb)
    code = code.clamp(max=root_child.shape[0] - 1)
    node = torch.where(torch.isfinite(scores), root_child[code], -1)  # (B, nb)

    # Every beam of user b reads row b's cache and encoder states from now on.
    cache.batch_repeat_interleave(nb)
    hidden = hidden.repeat_interleave(nb, dim=0)  # (B*nb, S, D)
    mask = attention_mask.repeat_interleave(nb, dim=0)  # (B*nb, S)
    row_base = (torch.arange(batch, device=device) * nb)[:, None]  # (B, 1)

    for level in range(1, vocab.num_levels):
        # feed the code chosen at the previous level; dead beams feed PAD (their scores stay -inf)
        prev_tok = torch.where(node >= 0, code + vocab.offsets[level - 1], PAD)
        out = model(
            encoder_outputs=(hidden,), attention_mask=mask,
            decoder_input_ids=prev_tok.reshape(batch * nb, 1),
            past_key_values=cache, use_cache=True,
        )
        cache = out.past_key_values
        k = vocab.codebook_sizes[level]
        lp = _level_log_probs(out.logits[:, -1], vocab, level).view(batch, nb, k)
        child = trie.child[level][node.clamp(min=0)]  # (B, nb, K)
        valid = (child >= 0) & (node >= 0)[:, :, None]
        cand = torch.where(valid, scores[:, :, None] + lp, NEG_INF).view(batch, nb * k)
        scores, flat = cand.topk(nb, dim=1)  # (B, nb) over beams x codes
        parent, code = flat // k, flat % k
        node = torch.where(torch.isfinite(scores), child.view(batch, nb * k).gather(1, flat), -1)
        if level + 1 < vocab.num_levels:
            _reorder_self_attention(cache, (row_base + parent).reshape(-1))

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
