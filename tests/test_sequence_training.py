"""Whole-sequence training (``--objective sequence``) and the item-level loss: one causal pass
per user equals the per-prefix examples it replaces, nothing reads the future, the trie's item
distribution is a distribution, and the windows train every target exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sid_catalog
from sgrec_cli.data.split import split_all
from sgrec_cli.errors import ConfigError
from sgrec_cli.generator.config import GeneratorConfig, SFTConfig
from sgrec_cli.generator.losses import (
    hard_negative_nll,
    level_weights,
    target_losses,
    token_nll,
    trie_nll,
)
from sgrec_cli.generator.model import build_model
from sgrec_cli.generator.objectives import LossSettings, prefix_loss, sequence_loss
from sgrec_cli.generator.sequences import encode_windows, user_sequences, windows
from sgrec_cli.generator.tokens import DECODER_START

SIZES = [5, 4, 3]
N_ITEMS = 40


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    codes, vocab, trie = sid_catalog(SIZES, N_ITEMS, np.random.default_rng(3))
    yield codes, vocab, trie
    torch.set_num_threads(threads)


def _model(vocab, codes, *, causal=True, score="generator", seed=0):
    cfg = GeneratorConfig(d_model=16, num_layers=2, num_heads=2, d_ff=32, input="items",
                          causal=causal, ids=True, score=score, dropout=0.0)
    torch.manual_seed(seed)
    model = build_model(cfg, vocab, codes=codes).eval()
    with torch.no_grad():
        model.item_emb.weight.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return model


SEQUENCES = [[3, 7, 1, 9, 12, 5, 30], [4, 8, 2, 11], [6, 0, 13, 21, 33, 17, 25, 19, 2]]


@pytest.mark.parametrize("score,item_weight,first,hard", [("generator", 0.0, 1.0, 0),
                                                          ("hybrid", 0.5, 3.0, 2)])
def test_sequence_loss_is_the_sum_of_the_prefix_losses(setup, score, item_weight, first, hard):
    codes, vocab, trie = setup
    model = _model(vocab, codes, score=score)
    how = LossSettings(vocab, trie, item_weight, first, hard)
    max_history = 4  # the third user's sequence needs two windows
    train, _, _ = split_all(SEQUENCES, max_history)
    wins = [w for s in user_sequences(train) for w in windows(s, max_history)]
    batch = encode_windows(wins, codes, vocab)
    with torch.no_grad():
        whole = float(sequence_loss(model, batch, how, "cpu")) * int(batch[4].sum())
    # the per-prefix examples that the windows train: each window position read from its start
    prefix_total, count = 0.0, 0
    for w in wins:
        for p in range(w.first, len(w.items) - 1):
            history, target = w.items[: p + 1], w.items[p + 1]
            ids, mask = vocab.encode_history([history], codes, len(history), per_item=True)
            labels = vocab.target_tokens([target], codes)
            with torch.no_grad():
                prefix_total += float(prefix_loss(
                    model, (ids, mask, labels, torch.tensor([target])), how, "cpu"))
            count += 1
    assert count == int(batch[4].sum()) == len(train)
    assert whole == pytest.approx(prefix_total, rel=1e-5)


def test_no_position_reads_its_future(setup):
    codes, vocab, _ = setup
    model = _model(vocab, codes)
    seq = torch.tensor([[4, 9, 13, 2, 21, 30]])
    mask = torch.ones_like(seq)
    labels = torch.from_numpy(vocab.code_tokens(codes[[8, 12, 1, 20, 29, 10]]))[None]
    changed = seq.clone()
    changed[0, 4] = 35  # a later item
    with torch.no_grad():
        h1 = model.encode(seq, mask)
        h2 = model.encode(changed, mask)
        l1, _ = model(input_ids=seq, attention_mask=mask, position_labels=labels)
        l2, _ = model(input_ids=changed, attention_mask=mask, position_labels=labels)
    assert torch.equal(h1[0, :4], h2[0, :4])
    assert not torch.allclose(h1[0, 4:], h2[0, 4:])
    assert torch.allclose(l1[0, :4], l2[0, :4])
    assert not torch.allclose(l1[0, 4], l2[0, 4])


def test_causal_encoder_is_t5s_arithmetic(setup):
    """With one layer, the last position reads every input in both encoders, so the written-out
    causal encoder must give exactly transformers' T5 encoder output there."""
    codes, vocab, _ = setup
    cfg = GeneratorConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32, input="items",
                          ids=True, dropout=0.0)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, codes=codes).eval()
    ids = torch.tensor([[5, 9, 3, 14], [7, 2, 11, 30]])
    mask = torch.ones_like(ids)
    from sgrec_cli.generator.causal import causal_encode
    with torch.no_grad():
        t5 = model.encode(ids, mask)
        ours = causal_encode(model, ids, mask)
    assert torch.allclose(ours[:, -1], t5[:, -1], atol=1e-5)
    assert not torch.allclose(ours[:, 0], t5[:, 0], atol=1e-3)


def test_trie_item_probabilities_sum_to_one(setup):
    codes, vocab, trie = setup
    model = _model(vocab, codes)
    history = torch.tensor([[3, 8, 15]])
    mask = torch.ones_like(history)
    labels = torch.from_numpy(vocab.code_tokens(codes))  # every catalogue item
    start = torch.full((N_ITEMS, 1), DECODER_START)
    with torch.no_grad():
        hidden = model.encode(history, mask).expand(N_ITEMS, -1, -1)
        logits = model(encoder_outputs=(hidden,), attention_mask=mask.expand(N_ITEMS, -1),
                       decoder_input_ids=torch.cat([start, labels[:, :-1]], 1)).logits
    nll = trie_nll(logits, torch.from_numpy(codes), trie, vocab).sum(1)
    assert float(torch.exp(-nll).sum()) == pytest.approx(1.0, abs=1e-5)
    # and it differs from the whole-vocabulary product, which leaks mass off the catalogue
    free = token_nll(logits, labels).sum(1)
    assert float(torch.exp(-free).sum()) < 0.999


def test_loss_weights_golden():
    assert level_weights(3, 1.0).tolist() == [1.0, 1.0, 1.0]
    assert level_weights(3, 4.0).tolist() == pytest.approx([2.0, 0.5, 0.5])
    # uniform logits over a vocabulary of 3 specials + 2 + 4 codes: each token costs ln 9;
    # the trie (items 00, 01, 02, 13) leaves 2 choices at level 0 and 3 under prefix 0
    from sgrec_cli.generator.tokens import SidVocab
    from sgrec_cli.generator.trie import SidTrie
    vocab = SidVocab([2, 4])
    trie = SidTrie.from_codes(np.array([[0, 0], [0, 1], [0, 2], [1, 3]]), [2, 4])
    logits = torch.zeros(1, 2, vocab.vocab_size)
    labels = torch.tensor([[3, 5 + 1]])  # item (0, 1)
    assert token_nll(logits, labels)[0].tolist() == pytest.approx([np.log(9), np.log(9)])
    assert trie_nll(logits, torch.tensor([[0, 1]]), trie, vocab)[0].tolist() == pytest.approx(
        [np.log(2), np.log(3)])
    got = target_losses(logits, labels, vocab, trie, item_weight=0.5, first_level_weight=3.0)
    level0, level1 = np.log(9) + 0.5 * np.log(2), np.log(9) + 0.5 * np.log(3)
    assert float(got) == pytest.approx((1.5 * level0 + 0.5 * level1) / 2)
    # hard negatives: level-0 scores 2 (target code 0) and 3 (code 1, the only wrong one)
    logits[0, 0, 3], logits[0, 0, 4] = 2.0, 3.0
    hn = hard_negative_nll(logits, torch.tensor([[0, 1]]), trie, vocab, 5)
    assert float(hn) == pytest.approx(np.log(np.exp(2) + np.exp(3)) - 2)


def test_windows_train_every_target_once():
    seq = list(range(11))
    for h in (1, 3, 4, 10, 20):
        wins = windows(seq, h)
        trained = [w.items[p + 1] for w in wins for p in range(w.first, len(w.items) - 1)]
        assert trained == seq[1:]
        assert all(len(w.items) - 1 <= h for w in wins)
    assert user_sequences(split_all([[1, 2, 3, 4, 5], [7, 8, 9, 6]], 2)[0]) == [[1, 2, 3],
                                                                                 [7, 8]]


def test_unknown_objective_and_noncausal_sequence_are_refused():
    with pytest.raises(ConfigError, match="objective 'whole' is not known"):
        SFTConfig(objective="whole")
    with pytest.raises(ConfigError, match="needs a causal encoder"):
        SFTConfig(objective="sequence", model=GeneratorConfig(causal=False))
    with pytest.raises(ConfigError, match="sequence needs item inputs"):
        SFTConfig(objective="sequence", model=GeneratorConfig(input="tokens"))
    # the objective follows the input, the encoder and the batch the objective, unless told
    default = SFTConfig()
    assert (default.objective, default.model.causal, default.batch_size) == ("sequence", True, 64)
    tokens = SFTConfig(model=GeneratorConfig(input="tokens"))
    assert (tokens.objective, tokens.model.causal, tokens.batch_size) == ("prefix", False, 256)
    assert SFTConfig(objective="prefix").model.causal is False
    assert SFTConfig(objective="sequence", batch_size=8).batch_size == 8
    with pytest.raises(ConfigError, match="causal encoder needs item inputs"):
        GeneratorConfig(input="tokens", causal=True).validate()
