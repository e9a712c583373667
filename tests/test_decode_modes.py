"""Decode modes (beam, exhaustive, auto) and the memory bound of decoding."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import sid_catalog
from sgrec_cli.errors import ConfigError
from sgrec_cli.eval.config import EvalConfig
from sgrec_cli.generator.config import GeneratorConfig
from sgrec_cli.generator.decode import (
    LoadedGenerator,
    bytes_per_user,
    generator_top_items,
    search_width,
    users_per_batch,
)
from sgrec_cli.generator.losses import target_losses
from sgrec_cli.generator.model import build_model
from sgrec_cli.names import AUTO_EXHAUSTIVE_ITEMS, resolve_decode
from sgrec_cli.serve.config import RecommendConfig

SIZES = [6, 5, 4]
N_ITEMS = 90


@pytest.fixture(scope="module")
def gen():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    codes, vocab, trie = sid_catalog(SIZES, N_ITEMS, np.random.default_rng(5))
    cfg = GeneratorConfig(d_model=16, num_layers=2, num_heads=2, d_ff=32, input="items",
                          causal=True, ids=True)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, codes=codes).eval()
    with torch.no_grad():
        model.item_emb.weight.normal_(generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(2)
    histories = [list(rng.choice(N_ITEMS, size=rng.integers(1, 9), replace=False))
                 for _ in range(12)]
    yield LoadedGenerator(model, vocab, trie, codes, 6), histories
    torch.set_num_threads(threads)


def _exact_scores(g: LoadedGenerator, history: list[int]) -> np.ndarray:
    """Every item's SID log-probability, teacher-forced one item at a time (the definition)."""
    from sgrec_cli.generator.tokens import DECODER_START
    ids, mask = g.vocab.encode_history([history], g.codes, g.max_history, per_item=True)
    labels = torch.from_numpy(g.vocab.code_tokens(g.codes))
    start = torch.full((N_ITEMS, 1), DECODER_START)
    with torch.no_grad():
        hidden = g.model.encode(ids, mask).expand(N_ITEMS, -1, -1)
        logits = g.model(encoder_outputs=(hidden,), attention_mask=mask.expand(N_ITEMS, -1),
                         decoder_input_ids=torch.cat([start, labels[:, :-1]], 1)).logits
    # the per-level mean of the token losses, times L, is minus the path log-probability
    return -(target_losses(logits, labels, g.vocab) * len(SIZES)).numpy()


def test_exhaustive_is_the_exact_top_k_and_equals_a_covering_beam(gen):
    g, histories = gen
    k = 10
    items, scores = generator_top_items(g, histories, k, 20, decode="exhaustive")
    wide, wide_s = generator_top_items(g, histories, k, N_ITEMS + 50, decode="beam")
    assert np.array_equal(items, wide)
    assert np.allclose(scores, wide_s, atol=1e-5)
    for u, hist in enumerate(histories):
        row = items[u]
        assert (row >= 0).all() and len(set(row.tolist())) == k  # valid, distinct, filled
        assert not set(row.tolist()) & set(int(i) for i in hist)  # no history item
        exact = _exact_scores(g, hist[-g.max_history:])
        exact[list(hist)] = -np.inf
        best = np.argsort(-exact, kind="stable")[:k]
        assert np.allclose(np.sort(exact[best]), np.sort(scores[u]), atol=1e-4)
        assert set(best.tolist()) == set(row.tolist())


def test_ranker_scoring_fuses_the_exact_scores_with_the_rankers(gen):
    """@ranker: every item's score is (1 - w) log p_gen + w log p_ranker; with beams that cover
    the catalogue the top k is exactly the best k of that sum (history left out)."""
    from sgrec_cli.generator.decode import Ranker, hybrid_weight_curve
    from sgrec_cli.names import RANKER_WEIGHT

    g, histories = gen
    k = 8
    table = torch.log_softmax(torch.randn(len(histories), N_ITEMS,
                                          generator=torch.Generator().manual_seed(3)), dim=1)
    rows = {tuple(h): table[u] for u, h in enumerate(histories)}

    # the ranker's log-probabilities of each history it is asked about
    ranker = Ranker(lambda hs: torch.stack([rows[tuple(h)] for h in hs]))
    assert ranker.weight == RANKER_WEIGHT
    items, scores = generator_top_items(g, histories, k, N_ITEMS, decode="beam",
                                        score="ranker", ranker=ranker)
    for u, hist in enumerate(histories):
        fused = ((1 - RANKER_WEIGHT) * _exact_scores(g, hist[-g.max_history:])
                 + RANKER_WEIGHT * table[u].numpy())
        fused[list(hist)] = -np.inf
        best = np.argsort(-fused, kind="stable")[:k]
        assert items[u].tolist() == best.tolist()
        np.testing.assert_allclose(scores[u], fused[best], atol=1e-4)
    # a ranker that is sure of one item puts it first whatever the generator thinks; without
    # a ranker the mode is refused in one line
    sure = torch.full((len(histories), N_ITEMS), -60.0)
    sure[:, 7] = 0.0
    top, _ = generator_top_items(g, histories, 3, 20, score="ranker",
                                 ranker=Ranker(lambda hs: sure[:len(hs)]))
    assert all(top[u, 0] == 7 for u, h in enumerate(histories) if 7 not in h)
    # the weight curve of the fusion: w = 0 ranks by the generator alone, w = 1 by the ranker
    targets = [int(np.argmax(table[u].numpy() - 1e9 * np.isin(np.arange(N_ITEMS), h)))
               for u, h in enumerate(histories)]  # each user's ranker favourite
    curve = hybrid_weight_curve(g.model, g.vocab, g.trie, histories, targets, g.codes, 20,
                                max_history=g.max_history, ranker=ranker)
    assert curve[1.0] == 1.0 and curve[0.0] < 1.0
    with pytest.raises(ConfigError, match="sgrec train --model sasrec"):
        generator_top_items(g, histories, 3, 20, score="ranker")


def test_narrow_beam_can_miss_what_exhaustive_finds(gen):
    g, histories = gen
    beam, beam_s = generator_top_items(g, histories, 5, 5, decode="beam", fill=False)
    exact, exact_s = generator_top_items(g, histories, 5, 5, decode="exhaustive")
    # exhaustive is never worse: its k-th best score is at least the beam's
    assert (exact_s[:, -1] >= np.where(np.isfinite(beam_s[:, -1]), beam_s[:, -1], -np.inf)
            - 1e-5).all()


def test_auto_mode_and_widths():
    assert resolve_decode("auto", AUTO_EXHAUSTIVE_ITEMS) == "exhaustive"
    assert resolve_decode("auto", AUTO_EXHAUSTIVE_ITEMS + 1) == "beam"
    assert search_width("exhaustive", 20, 10, 300) == 300
    assert search_width("beam", 20, 10, 300, widen=8) == 28
    assert search_width("beam", 5000, 10, 300) == 300  # never more beams than items
    with pytest.raises(ConfigError, match="decode mode 'greedy' is not known"):
        resolve_decode("greedy", 10)


@pytest.mark.parametrize("make", [lambda: EvalConfig(decode="fast"),
                                  lambda: RecommendConfig(decode="fast")])
def test_unknown_decode_mode_is_refused_in_one_line(make):
    with pytest.raises(ConfigError) as e:
        make()
    assert "--decode 'fast' is not known" in str(e.value) and "\n" not in str(e.value)


def test_users_per_batch_respects_the_budget(gen):
    g, _ = gen
    per_user = bytes_per_user(g.model, g.vocab, 100, 8)
    assert users_per_batch(g.model, g.vocab, 100, 8, 256, budget=per_user * 3) == 3
    assert users_per_batch(g.model, g.vocab, 100, 8, 2, budget=per_user * 3) == 2
    with pytest.raises(ConfigError, match="decoding 100 beams needs about"):
        users_per_batch(g.model, g.vocab, 100, 8, 256, budget=per_user - 1)


def test_a_huge_num_beams_stays_within_its_memory_bound(tmp_path):
    """--num-beams 10**9 on a 3,000-item catalogue and 400 users: the search is cut to the
    catalogue, users are batched under the budget, and the process's peak memory grows by
    less than the budget (measured in a fresh process)."""
    script = textwrap.dedent("""
        import json, resource, sys
        import numpy as np, torch
        sys.path.insert(0, "tests")
        from conftest import sid_catalog
        from sgrec_cli.generator import decode
        from sgrec_cli.generator.config import GeneratorConfig
        from sgrec_cli.generator.model import build_model
        torch.set_num_threads(1)
        budget = 64 << 20
        decode.DECODE_MEMORY_BYTES = budget
        codes, vocab, trie = sid_catalog([32, 16, 8], 3000, np.random.default_rng(0))
        model = build_model(GeneratorConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64,
                                            causal=True), vocab, codes=codes).eval()
        g = decode.LoadedGenerator(model, vocab, trie, codes, 10)
        rng = np.random.default_rng(1)
        hist = [list(rng.choice(3000, 10, replace=False)) for _ in range(400)]
        generator_top = decode.generator_top_items
        generator_top(g, hist[:2], 5, 20)  # warm up allocators
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        items, _ = generator_top(g, hist, 20, 10**9)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"grew": peak - before, "budget": budget,
                          "filled": bool((items >= 0).all())}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["filled"]
    assert got["grew"] < got["budget"], got


def test_an_old_model_folder_loads_and_scores_identically(gen, tmp_path):
    """A generator saved before the causal option (no 'causal' in generator.json) is the
    bidirectional model it was trained as, and decodes exactly as it did."""
    from sgrec_cli.generator.decode import predict_topk
    from sgrec_cli.generator.model import load_generator, save_generator

    g, histories = gen
    cfg = GeneratorConfig(d_model=16, num_layers=2, num_heads=2, d_ff=32, input="items",
                          causal=False)
    torch.manual_seed(3)
    old = build_model(cfg, g.vocab, codes=g.codes).eval()
    save_generator(old, cfg, tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    del meta["generator"]["causal"]
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    loaded, loaded_cfg, vocab = load_generator(tmp_path)
    assert loaded_cfg.causal is False
    args = (vocab, g.trie, histories, g.codes, 10)
    a, a_s = predict_topk(old, *args, num_beams=20, with_scores=True)
    b, b_s = predict_topk(loaded, *args, num_beams=20, with_scores=True)
    assert np.array_equal(a, b) and np.array_equal(a_s, b_s)
