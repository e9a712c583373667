"""The test oracle for constrained beam search: `transformers`' own ``model.generate`` with
``prefix_allowed_tokens_fn`` (the LC-Rec / MiniOneRec recipe). Used by
tests/test_generator_beam.py and bench/beam.py; it is not part of the package."""

from __future__ import annotations

import torch
from transformers import T5ForConditionalGeneration

from sgrec_cli.generator.tokens import DECODER_START, PAD, SidVocab
from sgrec_cli.generator.trie import SidTrie

NEG_INF = float("-inf")


def allowed_tokens(trie: SidTrie, vocab: SidVocab) -> dict[tuple[int, ...], list[int]]:
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
    assert num_beams >= 1 and list(trie.codebook_sizes) == list(vocab.codebook_sizes)
    model.eval()
    table = allowed_tokens(trie, vocab) if allowed is None else allowed
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
