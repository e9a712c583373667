"""Where the generator loses a target: teacher-forced level accuracy and beam survival."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sid_catalog
from sgrec_cli.generator.beam import constrained_beam_search
from sgrec_cli.generator.config import GeneratorConfig
from sgrec_cli.generator.diagnose import (
    diagnose,
    distribution_diagnosis,
    summarize_diagnosis,
    target_nodes,
)
from sgrec_cli.generator.model import build_model
from sgrec_cli.generator.trie import SidTrie

SIZES = [4, 4, 4]
N_ITEMS = 40


@pytest.fixture(scope="module")
def case():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    codes, vocab, trie = sid_catalog(SIZES, N_ITEMS, rng)
    torch.manual_seed(0)
    cfg = GeneratorConfig(d_model=32, num_layers=1, num_heads=4, d_ff=64, input="tokens")
    model = build_model(cfg, vocab).eval()
    histories = [tuple(rng.integers(0, N_ITEMS, size=rng.integers(1, 6))) for _ in range(24)]
    ids, mask = vocab.encode_history(histories, codes, max_items=5)
    greedy, _ = constrained_beam_search(model, ids, mask, trie, vocab, 1)
    # half the users' target is the model's own greedy item, half a random one
    targets = [int(g) if u % 2 == 0 else int(rng.integers(0, N_ITEMS))
               for u, g in enumerate(greedy[:, 0])]
    yield codes, vocab, trie, model, histories, targets
    torch.set_num_threads(threads)


def run(case, num_beams):
    codes, vocab, trie, model, histories, targets = case
    return diagnose(model, vocab, trie, histories, targets, codes, max_history=5,
                    num_beams=num_beams, batch=7)


def test_target_nodes_walk_the_trie(case):
    codes, _, trie, *_ = case
    nodes = target_nodes(trie, torch.as_tensor(codes[:5]))
    assert (nodes >= 0).all()
    assert trie.leaf_item[nodes[:, -1]].tolist() == [0, 1, 2, 3, 4]


def test_greedy_target_is_right_at_every_level_and_never_lost(case):
    t = run(case, num_beams=1)
    assert t["trie"][0::2].all() and t["survival"][0::2].all()
    # with one beam, the target survives to the end exactly when the constrained argmax is
    # right at every level given the true prefix: the two computations agree user by user
    assert (t["survival"][:, -1] == t["trie"].all(axis=1)).all()
    assert not t["survival"][1::2, -1].all()  # some random targets are lost


def test_survival_only_falls_and_trie_accuracy_contains_free(case):
    for nb in (1, 3, 8):
        t = run(case, num_beams=nb)
        s = t["survival"]
        assert (s[:, 1:] <= s[:, :-1]).all()
        assert (t["free"] <= t["trie"]).all()  # a right free argmax is an allowed code
        summary = summarize_diagnosis(t)
        assert summary["users"] == 24
        assert sum(summary["lost_at"]) == pytest.approx(1 - summary["beam_survival"][-1],
                                                        abs=1e-3)
    assert run(case, num_beams=N_ITEMS)["survival"].all()  # every item fits in the beam


def test_last_level_survival_is_the_beam_search_top_k(case):
    codes, vocab, trie, model, histories, targets = case
    ids, mask = vocab.encode_history(histories, codes, 5)
    items, _ = constrained_beam_search(model, ids, mask, trie, vocab, 3)
    in_top = [(items[u] == targets[u]).any().item() for u in range(len(targets))]
    assert run(case, num_beams=3)["survival"][:, -1].tolist() == in_top


def test_golden_distribution_diagnosis():
    # items (codes): 0 (0,0), 1 (0,1), 2 (1,0), 3 (2,0), 4 (2,1); one distribution for two users
    codes = np.array([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]])
    trie = SidTrie.from_codes(codes, [3, 2])
    p = torch.tensor([[0.05, 0.15, 0.35, 0.25, 0.20]] * 2).log()
    # first-code masses: 0 -> 0.20, 1 -> 0.35, 2 -> 0.45
    # user A, target 1 (0,1): code 2 is the most massive (wrong); given 0, 0.15 > 0.05 (right).
    # user B, target 4 (2,1): code 2 (right); given 2, item 3's 0.25 > 0.20 (wrong).
    # 2 beams: codes 2 and 1 kept (A lost at level 0), then items 2 (0.35) and 3 (0.25) (B lost)
    got = distribution_diagnosis(p, trie, codes, [1, 4], num_beams=2)
    assert got["trie"].tolist() == [[False, True], [True, False]]
    assert np.array_equal(got["free"], got["trie"])
    assert got["survival"].tolist() == [[False, False], [True, False]]
    # 3 beams: every first code kept, then items 2, 3 and 4 (B's target survives)
    got = distribution_diagnosis(p, trie, codes, [1, 4], num_beams=3)
    assert got["survival"].tolist() == [[True, False], [True, True]]
    # a beam wider than the catalogue keeps everything (no empty slot expands a real prefix)
    got = distribution_diagnosis(p, trie, codes, [1, 4], num_beams=50)
    assert got["survival"].all()
    assert summarize_diagnosis(got)["lost_at"] == [0.0, 0.0]
