"""Constrained beam search: validity, agreement with `generate`, exactness, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sid_catalog
from hf_oracle import hf_generate_baseline
from sgrec_cli.generator.beam import constrained_beam_search
from sgrec_cli.generator.config import GeneratorConfig
from sgrec_cli.generator.model import build_model, load_generator, save_generator
from sgrec_cli.generator.tokens import DECODER_START
from sgrec_cli.generator.trie import SidTrie

SIZES = [8, 8, 8]
N_ITEMS = 200
TIE = 1e-5


@pytest.fixture(scope="module")
def setup():
    # one thread: tiny matmuls gain nothing from more, and on a busy CPU spinning threads
    # make each call ~50x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    codes, vocab, trie = sid_catalog(SIZES, N_ITEMS, rng)
    cfg = GeneratorConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, input="tokens")
    torch.manual_seed(0)
    model = build_model(cfg, vocab).eval()
    histories = [tuple(rng.integers(0, N_ITEMS, size=rng.integers(1, 9))) for _ in range(5)]
    input_ids, attention_mask = vocab.encode_history(histories, codes, max_items=6)
    yield codes, vocab, trie, cfg, model, input_ids, attention_mask
    torch.set_num_threads(threads)


def assert_same_ranking(items_a, scores_a, items_b, scores_b):
    """Same lists, allowing swaps only between items whose scores tie within TIE."""
    torch.testing.assert_close(scores_a, scores_b, atol=TIE, rtol=0)
    for ia, sa, ib in zip(items_a, scores_a, items_b, strict=True):
        for j in torch.nonzero(ia != ib).view(-1).tolist():
            assert ((sa - sa[j]).abs() <= TIE).sum() > 1, f"item mismatch at rank {j} without a tie"


def test_encode_history_and_tokens(setup):
    codes, vocab, *_ = setup
    ids, mask = vocab.encode_history([(0, 1, 2), (5,)], codes, max_items=2)
    assert ids.shape == mask.shape == (2, 2 * 3 + 1)
    assert mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0]  # right-padded
    assert vocab.tokens_to_codes(ids[0, :3]).tolist() == codes[1].tolist()  # oldest kept item
    tgt = vocab.target_tokens([3, 7], codes)
    assert vocab.tokens_to_codes(tgt).tolist() == codes[[3, 7]].tolist()


@pytest.mark.parametrize("num_beams", [4, 10])
def test_beam_items_valid_distinct_sorted(setup, num_beams):
    _, vocab, trie, _, model, ids, mask = setup
    items, scores = constrained_beam_search(model, ids, mask, trie, vocab, num_beams)
    assert items.shape == scores.shape == (ids.shape[0], num_beams)
    assert ((items >= 0) & (items < N_ITEMS)).all()
    for row in items:
        assert len(set(row.tolist())) == num_beams
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    top, top_scores = constrained_beam_search(model, ids, mask, trie, vocab, num_beams, topk=3)
    assert torch.equal(top, items[:, :3]) and torch.equal(top_scores, scores[:, :3])


@pytest.mark.parametrize("num_beams", [4, 10])
def test_matches_hf_generate(setup, num_beams):
    _, vocab, trie, _, model, ids, mask = setup
    ours = constrained_beam_search(model, ids, mask, trie, vocab, num_beams)
    theirs = hf_generate_baseline(model, ids, mask, trie, vocab, num_beams)
    assert_same_ranking(*ours, *theirs)


@torch.no_grad()
def test_exhaustive_beam_is_exact(setup):
    codes, vocab, trie, _, model, ids, mask = setup
    user_ids, user_mask = ids[:1], mask[:1]
    # exact log P(SID of every item | history) by teacher forcing
    target = vocab.target_tokens(np.arange(N_ITEMS), codes)  # (N, L)
    dec_in = torch.cat([torch.full((N_ITEMS, 1), DECODER_START), target[:, :-1]], dim=1)
    logits = model(
        input_ids=user_ids.expand(N_ITEMS, -1), attention_mask=user_mask.expand(N_ITEMS, -1),
        decoder_input_ids=dec_in,
    ).logits  # (N, L, V)
    exact = torch.log_softmax(logits, -1).gather(2, target[:, :, None]).sum((1, 2))  # (N,)

    items, scores = constrained_beam_search(
        model, user_ids, user_mask, trie, vocab, num_beams=N_ITEMS + 7
    )
    items, scores = items[0], scores[0]
    assert sorted(items[:N_ITEMS].tolist()) == list(range(N_ITEMS))
    assert (items[N_ITEMS:] == -1).all() and torch.isneginf(scores[N_ITEMS:]).all()
    torch.testing.assert_close(scores[:N_ITEMS], exact[items[:N_ITEMS]], atol=TIE, rtol=0)
    order = torch.argsort(exact, descending=True)
    assert_same_ranking(
        items[None, :N_ITEMS], scores[None, :N_ITEMS], order[None], exact[order][None]
    )


def test_save_load_roundtrip(setup, tmp_path):
    _, vocab, trie, cfg, model, ids, mask = setup
    save_generator(model, cfg, tmp_path / "gen")
    loaded, cfg2, vocab2 = load_generator(tmp_path / "gen")
    assert cfg2 == cfg and vocab2.codebook_sizes == vocab.codebook_sizes
    before = constrained_beam_search(model, ids, mask, trie, vocab, 6)
    after = constrained_beam_search(loaded, ids, mask, trie, vocab2, 6)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_trie_refuses_duplicates(setup):
    codes = setup[0]
    dup = np.concatenate([codes, codes[:1]])
    with pytest.raises(ValueError, match="duplicate"):
        SidTrie.from_codes(dup, SIZES)


def test_trie_lookup(setup):
    codes, _, trie, *_ = setup
    assert trie.items_of(torch.from_numpy(codes)).tolist() == list(range(N_ITEMS))
    missing = set(range(512)) - {int(a * 64 + b * 8 + c) for a, b, c in codes}
    m = min(missing)
    assert trie.items_of(torch.tensor([[m // 64, (m // 8) % 8, m % 8]])).tolist() == [-1]


@torch.no_grad()
def test_beam_decoder_matches_t5_decoder(setup):
    """BeamDecoder's logits equal T5's own decoder (teacher forcing) for every beam, after
    beams are reordered to other parents (so a wrong cache move would show)."""
    from sgrec_cli.generator.beamstep import BeamDecoder

    _, vocab, _, _, model, ids, mask = setup
    batch, nb, steps = ids.shape[0], 3, 3
    gen = torch.Generator().manual_seed(1)
    hidden = model.get_encoder()(input_ids=ids, attention_mask=mask)[0]
    dec = BeamDecoder(model)
    dec.start(hidden, mask)
    seqs = torch.full((batch, 1, 1), DECODER_START)  # (B, n_live, t) every beam's tokens
    tokens, parent = seqs[:, :, 0], None
    for _ in range(steps):
        logits = dec.step(tokens, parent)  # (B, n_live, V)
        n_live = tokens.shape[1]
        full = model(input_ids=ids.repeat_interleave(n_live, 0),
                     attention_mask=mask.repeat_interleave(n_live, 0),
                     decoder_input_ids=seqs.reshape(batch * n_live, -1)).logits[:, -1]
        torch.testing.assert_close(logits.reshape(batch * n_live, -1), full, atol=1e-4, rtol=0)
        parent = torch.randint(0, n_live, (batch, nb), generator=gen)  # (B, nb)
        tokens = torch.randint(3, vocab.vocab_size, (batch, nb), generator=gen)
        seqs = torch.cat([seqs[torch.arange(batch)[:, None], parent], tokens[:, :, None]], 2)


@torch.no_grad()
def _constrained_item_log_probs(model, ids, mask, trie, vocab, codes) -> torch.Tensor:
    """log P(item | history) (N,) under trie-constrained ancestral decoding: each level's
    distribution renormalised over the codes the trie allows after the item's prefix."""
    n = codes.shape[0]
    target = vocab.target_tokens(np.arange(n), codes)  # (N, L)
    dec_in = torch.cat([torch.full((n, 1), DECODER_START), target[:, :-1]], dim=1)
    logits = model(input_ids=ids.expand(n, -1), attention_mask=mask.expand(n, -1),
                   decoder_input_ids=dec_in).logits  # (N, L, V)
    node = torch.zeros(n, dtype=torch.long)
    out = torch.zeros(n)
    for level in range(vocab.num_levels):
        start, stop = vocab.level_range(level)
        lp = torch.log_softmax(logits[:, level].float(), -1)[:, start:stop]
        lp = torch.where(trie.child[level][node] >= 0, lp, float("-inf"))
        code = torch.as_tensor(codes[:, level])
        out += torch.log_softmax(lp, -1).gather(1, code[:, None])[:, 0]
        node = trie.child[level][node, code]
    return out


def test_sampled_rollouts_follow_the_model(setup):
    """Stochastic beam search with one beam is a draw from the constrained item distribution:
    20,000 seeded draws pass a chi-square test against the exact probabilities; with k beams
    the items are distinct catalogue items, sorted by their exact log-probability."""
    codes, vocab, trie, _, model, ids, mask = setup
    user_ids, user_mask = ids[:1], mask[:1]
    p = _constrained_item_log_probs(model, user_ids, user_mask, trie, vocab, codes).exp()
    assert abs(float(p.sum()) - 1.0) < 1e-4
    draws = 20_000
    gen = torch.Generator().manual_seed(0)
    items, _ = constrained_beam_search(model, user_ids.expand(draws, -1),
                                       user_mask.expand(draws, -1), trie, vocab, 1, sample=gen)
    observed = np.bincount(items[:, 0].numpy(), minlength=N_ITEMS)
    expected = p.numpy() * draws
    common = expected >= 5  # the chi-square approximation needs expected counts >= 5
    chi2 = ((observed[common] - expected[common]) ** 2 / expected[common]).sum()
    chi2 += (observed[~common].sum() - expected[~common].sum()) ** 2 / max(
        expected[~common].sum(), 1e-9)
    df = int(common.sum())  # common cells + the pooled rare cell, minus one
    assert chi2 < df + 6 * np.sqrt(2 * df), (chi2, df)  # mean + 6 sd of chi-square(df)
    items, scores = constrained_beam_search(model, ids, mask, trie, vocab, 12, sample=gen,
                                            temperature=2.0)
    beam, _ = constrained_beam_search(model, ids, mask, trie, vocab, 12)
    assert ((items >= 0) & (items < N_ITEMS)).all()
    assert all(len(set(row.tolist())) == 12 for row in items)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert not torch.equal(items, beam)  # a sample, not the top-12
    again, _ = constrained_beam_search(model, ids, mask, trie, vocab, 12,
                                       sample=torch.Generator().manual_seed(5))
    same, _ = constrained_beam_search(model, ids, mask, trie, vocab, 12,
                                      sample=torch.Generator().manual_seed(5))
    assert torch.equal(again, same)  # seeded: reproducible
    with pytest.raises(ValueError, match="temperature"):
        constrained_beam_search(model, ids, mask, trie, vocab, 4, sample=gen, temperature=0)
