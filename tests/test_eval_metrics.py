"""Evaluation metrics, paired bootstrap and the most-popular baseline: golden hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgrec_cli.baselines.popularity import MostPopular
from sgrec_cli.data.split import Example, split_all
from sgrec_cli.errors import ConfigError, SgrecError
from sgrec_cli.eval.bootstrap import paired_bootstrap
from sgrec_cli.eval.metrics import (
    coverage,
    invalid_and_duplicate_rate,
    ndcg_at_k,
    per_user_metrics,
    ranks_of_targets,
    recall_at_k,
    summarize,
)

TOPK = np.array([[3, 1, 2], [5, 6, 7], [9, 8, 4]])
TARGETS = np.array([1, 7, 0])


def test_golden_ranks():
    # row 0: 1 in slot 2 -> rank 2; row 1: 7 in slot 3 -> rank 3; row 2: 0 absent -> 0
    assert ranks_of_targets(TOPK, TARGETS).tolist() == [2, 3, 0]


def test_ranks_empty_slots_never_match_and_first_repeat_counts():
    # target -1 must not match the -1 padding; a repeated 4 counts at its first slot (rank 1)
    topk = np.array([[7, -1, -1], [4, 4, 2]])
    assert ranks_of_targets(topk, np.array([-1, 4])).tolist() == [0, 1]


def test_golden_recall_and_ndcg():
    ranks = np.array([2, 3, 0])
    # recall@1: no rank is 1 -> 0; @2: only rank 2 -> 1/3; @3: ranks 2 and 3 -> 2/3
    assert recall_at_k(ranks, 1) == 0.0
    assert recall_at_k(ranks, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 3) == pytest.approx(2 / 3)
    # ndcg@3 = (1/log2(3) + 1/log2(4) + 0) / 3 = (0.63093 + 0.5) / 3 = 0.37698
    assert ndcg_at_k(ranks, 3) == pytest.approx((1 / math.log2(3) + 0.5) / 3)
    assert ndcg_at_k(ranks, 3) == pytest.approx(0.37698, abs=1e-5)
    # ndcg@2 = (0.63093 + 0 + 0) / 3 = 0.21031 (rank 3 is cut off)
    assert ndcg_at_k(ranks, 2) == pytest.approx(0.21031, abs=1e-5)
    assert isinstance(recall_at_k(ranks, 3), float) and isinstance(ndcg_at_k(ranks, 3), float)


def test_per_user_and_summarize():
    per_user = per_user_metrics(np.array([2, 3, 0]), ks=(1, 3))
    assert sorted(per_user) == ["ndcg@1", "ndcg@3", "recall@1", "recall@3"]
    assert per_user["recall@3"].tolist() == [1.0, 1.0, 0.0]
    # per-user ndcg@3: 1/log2(3) = 0.63093, 1/log2(4) = 0.5, 0
    assert per_user["ndcg@3"] == pytest.approx([0.63093, 0.5, 0.0], abs=1e-5)
    means = summarize(per_user)
    assert means["recall@1"] == 0.0 and means["recall@3"] == pytest.approx(2 / 3)
    assert means["ndcg@3"] == pytest.approx(0.37698, abs=1e-5)
    assert all(isinstance(v, float) for v in means.values())


def test_bad_k_and_empty_ranks():
    with pytest.raises(ConfigError):
        recall_at_k(np.array([1]), 0)
    with pytest.raises(SgrecError):
        ndcg_at_k(np.array([], dtype=int), 5)


def test_golden_invalid_duplicate_rates():
    # n_items = 5, 2 rows x 4 slots = 8 slots
    # row 0: 0 1 1 -1 -> one duplicate (second 1), one empty
    # row 1: 7 2 -3 2 -> 7 and -3 invalid, one duplicate (second 2)
    topk = np.array([[0, 1, 1, -1], [7, 2, -3, 2]])
    rates = invalid_and_duplicate_rate(topk, n_items=5)
    assert rates == {"empty_rate": 1 / 8, "invalid_rate": 2 / 8, "duplicate_rate": 2 / 8}


def test_repeated_invalid_ids_are_invalid_not_duplicate():
    # 9 9 with n_items 5: both slots invalid, neither a duplicate (the rates are disjoint)
    rates = invalid_and_duplicate_rate(np.array([[9, 9, 0]]), n_items=5)
    assert rates["invalid_rate"] == pytest.approx(2 / 3) and rates["duplicate_rate"] == 0.0


def test_golden_coverage():
    # n_items = 10; first 2 columns hold {3, 1, 5, 6, 9, 8} -> 6/10;
    # all 3 columns add 2, 7, 4 -> 9/10
    assert coverage(TOPK, n_items=10, k=2) == pytest.approx(0.6)
    assert coverage(TOPK, n_items=10, k=3) == pytest.approx(0.9)
    # -1 and out-of-range ids are not covered items: only {0, 2} -> 2/4
    assert coverage(np.array([[0, -1], [9, 2]]), n_items=4, k=2) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(ranks=st.lists(st.integers(0, 30), min_size=1, max_size=40))
def test_metric_properties(ranks):
    r = np.array(ranks)
    recalls = [recall_at_k(r, k) for k in range(1, 32)]
    assert all(x <= y for x, y in zip(recalls, recalls[1:], strict=False))
    for k in (1, 2, 5, 10, 31):
        assert 0.0 <= ndcg_at_k(r, k) <= recall_at_k(r, k) + 1e-12


# --- paired bootstrap ------------------------------------------------------------------------


def test_bootstrap_identical_arrays():
    a = np.random.default_rng(1).random(50)
    res = paired_bootstrap(a, a.copy(), n_boot=500)
    # every bootstrap difference is exactly 0: P(<=0) = P(>=0) = 1 -> p = min(1, 2) = 1
    assert res["diff"] == 0.0 and res["p_value"] == 1.0
    assert res["ci_low"] == res["ci_high"] == 0.0
    assert res["rel_diff"] == 0.0


def test_bootstrap_golden_constant_difference():
    # a - b = 0.25 for every user: every replicate mean is 0.25, so the CI is [0.25, 0.25],
    # no replicate is <= 0 -> p = 2 * 0 = 0; rel_diff = 0.25 / mean_b = 0.25 / 0.5 = 0.5
    b = np.array([0.0, 1.0, 0.5, 0.5])
    res = paired_bootstrap(b + 0.25, b, n_boot=200)
    assert res["mean_a"] == 0.75 and res["mean_b"] == 0.5 and res["diff"] == 0.25
    assert res["ci_low"] == pytest.approx(0.25) and res["ci_high"] == pytest.approx(0.25)
    assert res["p_value"] == 0.0 and res["rel_diff"] == pytest.approx(0.5)


def test_bootstrap_clearly_better_model():
    rng = np.random.default_rng(0)
    b = rng.random(500)
    a = b + 0.2 + rng.normal(0.0, 0.3, 500)
    res = paired_bootstrap(a, b, n_boot=2000, seed=3)
    assert res["p_value"] < 0.01
    assert 0.0 < res["ci_low"] < res["diff"] < res["ci_high"]


def test_bootstrap_no_effect_is_not_significant():
    rng = np.random.default_rng(5)
    a, b = rng.random(300), rng.random(300)
    b = b - b.mean() + a.mean()  # equal means: observed diff = 0, p must be large
    res = paired_bootstrap(a, b, n_boot=2000)
    assert res["p_value"] > 0.5 and res["ci_low"] < 0.0 < res["ci_high"]


def test_bootstrap_deterministic_given_seed():
    rng = np.random.default_rng(2)
    a, b = rng.random(100), rng.random(100)
    assert paired_bootstrap(a, b, n_boot=300, seed=7) == paired_bootstrap(a, b, n_boot=300, seed=7)
    assert paired_bootstrap(a, b, n_boot=300, seed=7) != paired_bootstrap(a, b, n_boot=300, seed=8)


def test_bootstrap_refuses_bad_input():
    with pytest.raises(SgrecError, match="same users"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(SgrecError):
        paired_bootstrap(np.array([]), np.array([]))
    with pytest.raises(ConfigError):
        paired_bootstrap(np.zeros(3), np.zeros(3), alpha=1.5)
    assert paired_bootstrap(np.ones(3), np.zeros(3), n_boot=10)["rel_diff"] is None  # mean_b 0


# --- most-popular baseline -------------------------------------------------------------------

# user 0: 0 1 2 3 4 -> train interactions 0 1 2 (valid 3, test 4)
# user 1: 2 1 5 6   -> train interactions 2 1    (valid 5, test 6)
# user 2: 2 7 8     -> train interaction  2      (no train example; first item only)
SEQS = [[0, 1, 2, 3, 4], [2, 1, 5, 6], [2, 7, 8]]


def test_most_popular_golden_counts():
    train, _, _ = split_all(SEQS, max_history=20)
    # train targets: 1, 2 (user 0), 1 (user 1); first items: 0, 2, 2
    # counts: item0 = 1, item1 = 2, item2 = 3, items 3..8 = 0 (valid/test targets never count)
    model = MostPopular().fit(train, sequences=SEQS, n_items=9)
    assert model.counts.tolist() == [1, 2, 3, 0, 0, 0, 0, 0, 0]
    # order: 2 (3), 1 (2), 0 (1), then zero-count items by lower index 3, 4, ...
    assert model.recommend([(0,), (5, 6)], k=4).tolist() == [[2, 1, 0, 3], [2, 1, 0, 3]]


def test_most_popular_without_sequences_misses_only_three_item_users():
    train, _, _ = split_all(SEQS, max_history=1)
    # first items come from each user's first train example: 0 (user 0), 2 (user 1);
    # user 2 has no train example -> item2 = 2 here; truncated histories are not counted
    model = MostPopular().fit(train)
    assert model.counts.tolist() == [1, 2, 2]
    # tie between 1 and 2 (count 2) broken by lower index; k > n_items pads with -1
    assert model.recommend([()], k=4).tolist() == [[1, 2, 0, -1]]


def test_most_popular_exclude_history():
    train, _, _ = split_all(SEQS, max_history=20)
    model = MostPopular().fit(train, sequences=SEQS, n_items=9)
    # ranking: 2 1 0 3 4 5 6 7 8
    recs = model.recommend([(2, 0), (), (1, 3, 2, 9)], k=3, exclude_history=True)
    # user 0 skips 2 and 0 -> 1 3 4; user 1 keeps 2 1 0; user 2 skips 1 3 2 (9 is unknown) -> 0 4 5
    assert recs.tolist() == [[1, 3, 4], [2, 1, 0], [0, 4, 5]]
    # history covering almost all items: fewer than k remain -> -1 padding
    few = model.recommend([tuple(range(8))], k=3, exclude_history=True)
    assert few.tolist() == [[8, -1, -1]]


def test_most_popular_refuses_misuse():
    with pytest.raises(SgrecError):
        MostPopular().recommend([()], k=3)
    model = MostPopular().fit([Example(0, (0,), 1)])
    with pytest.raises(ConfigError):
        model.recommend([()], k=0)
    with pytest.raises(SgrecError):
        MostPopular().fit([Example(0, (0,), 5)], n_items=3)
