"""Semantic-ID maths: hand-computed golden cases for dedup and stats, plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgrec_cli.errors import SgrecError
from sgrec_cli.sids.dedup import (
    collision_groups,
    collision_rate,
    dedup_reassign,
    dedup_suffix,
    ensure_unique,
)
from sgrec_cli.sids.stats import (
    level_usage,
    prefix_collision_rates,
    reconstruction_mse,
    relative_reconstruction_error,
    semantic_coherence,
)

# items 0, 1, 3 share (0,1); 2 = (2,3) and 4 = (2,4) are unique
GOLDEN = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 4]])


# ---- dedup: golden cases ----------------------------------------------------------------------


def test_golden_collision_groups_and_rate():
    groups = collision_groups(GOLDEN)
    assert [g.tolist() for g in groups] == [[0, 1, 3]]
    # 3 of 5 items share their code
    assert collision_rate(GOLDEN) == pytest.approx(3 / 5)


def test_groups_are_ordered_by_first_member():
    # (5,5) appears first (item 0), (1,1) later: lexicographic order would put (1,1) first
    codes = np.array([[5, 5], [1, 1], [5, 5], [1, 1], [0, 0]])
    assert [g.tolist() for g in collision_groups(codes)] == [[0, 2], [1, 3]]
    assert collision_rate(codes) == pytest.approx(4 / 5)


def test_golden_suffix():
    out = dedup_suffix(GOLDEN)
    # group (0,1) = items 0,1,3 -> ranks 0,1,2; items 2 and 4 are unique -> 0
    assert out[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert np.array_equal(out[:, :2], GOLDEN)
    ensure_unique(out)


def test_golden_reassign_greedy_three_by_four():
    codes = np.array([[0, 1], [0, 1], [0, 1]])
    cost = np.array([
        [5.0, 1.0, 4.0, 9.0],
        [2.0, 3.0, 1.0, 8.0],
        [3.0, 2.0, 0.5, 7.0],
    ])
    # own costs at code 1: item0 1, item1 3, item2 2 -> item 0 keeps (0,1)
    # movers {1, 2}, free codes {0, 2, 3}; triples sorted by (cost, item, code):
    #   (0.5, 2, 2) take -> item 2 gets code 2
    #   (1.0, 1, 2) code 2 taken, skip
    #   (2.0, 1, 0) take -> item 1 gets code 0        total 2.5 (item1->2, item2->0 would be 4)
    out = dedup_reassign(codes, cost, K=4)
    assert out.tolist() == [[0, 1], [0, 0], [0, 2]]


def test_golden_reassign_occupied_codes_and_cheapest_winner():
    codes = np.array([[0, 2], [0, 2], [0, 0], [1, 2]])
    cost = np.array([
        [1.0, 9.0, 4.0],  # own cost 4
        [1.0, 9.0, 2.0],  # own cost 2 -> item 1 keeps (0,2) although item 0 comes first
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ])
    # under prefix (0,): code 2 (item 1) and code 0 (item 2) stay used, so free = {1}:
    # item 0 must take code 1 at cost 9, though code 0 is cheaper. Item 3 has another prefix.
    out = dedup_reassign(codes, cost, K=3)
    assert out.tolist() == [[0, 1], [0, 2], [0, 0], [1, 2]]


def test_reassign_single_level_and_cost_ties():
    # L = 1: the prefix is empty; equal costs -> the lowest index keeps code 0,
    # and item 1 takes the lowest free code
    out = dedup_reassign(np.array([[0], [0], [2]]), np.zeros((3, 3)), K=3)
    assert out.tolist() == [[0], [1], [2]]


def test_reassign_refuses_a_prefix_larger_than_k():
    codes = np.array([[1, 0], [0, 1], [1, 1], [1, 0]])
    with pytest.raises(SgrecError) as err:
        dedup_reassign(codes, np.zeros((4, 2)), K=2)
    msg = str(err.value)
    assert "(1,)" in msg and "3 items" in msg and "K=2" in msg and "--dedup suffix" in msg
    assert "\n" not in msg


def test_reassign_leaves_unique_codes_alone():
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    assert np.array_equal(dedup_reassign(codes, np.ones((3, 2)), K=2), codes)


def test_ensure_unique_reports_a_collision():
    with pytest.raises(SgrecError, match=r"items 0, 1, 3 all have \(0, 1\)"):
        ensure_unique(GOLDEN)


def test_empty_code_table():
    empty = np.zeros((0, 3), dtype=np.int64)
    assert collision_groups(empty) == [] and collision_rate(empty) == 0.0
    assert dedup_suffix(empty).shape == (0, 4)
    assert dedup_reassign(empty, np.zeros((0, 4)), K=4).shape == (0, 3)


# ---- stats: golden cases ----------------------------------------------------------------------


def test_golden_level_usage():
    codes = np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
    lv1, lv2 = level_usage(codes, K=4)
    # level 1: [0,0,1,1] -> p = (1/2, 1/2): H = 2 * (-1/2 log2 1/2) = 1 bit, perplexity 2
    assert lv1 == {"level": 1, "used": 2, "utilisation": 0.5, "entropy_bits": 1.0,
                   "perplexity": 2.0}
    # level 2: [0,1,2,3] uniform over 4 -> H = log2 4 = 2 bits, perplexity 4
    assert lv2["used"] == 4 and lv2["utilisation"] == 1.0
    assert lv2["entropy_bits"] == pytest.approx(2.0) and lv2["perplexity"] == pytest.approx(4.0)


def test_golden_skewed_entropy():
    # p = (3/4, 1/4): H = -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.811278...
    (lv,) = level_usage(np.array([[0], [0], [0], [5]]), K=8)
    assert lv["entropy_bits"] == pytest.approx(0.8112781244591328)
    assert lv["used"] == 2 and lv["utilisation"] == 0.25


def test_golden_prefix_collision_rates():
    # level 1 alone: [0,0,2,0,2] -> every item shares -> 1.0; both levels -> 3/5
    assert prefix_collision_rates(GOLDEN) == pytest.approx([1.0, 3 / 5])


def test_golden_semantic_coherence():
    level1 = np.array([0, 0, 0, 1, 1, 2])
    labels = ["a", "a", "b", "b", "b", None]  # item 5 is unlabelled and ignored
    out = semantic_coherence(level1, labels)
    # code 0: a,a,b -> C(3,2) = 3 pairs, same label C(2,2) = 1
    # code 1: b,b   -> C(2,2) = 1 pair,  same label 1
    # p_same_code = (1 + 1) / (3 + 1) = 0.5
    # all 5 labelled: a x2, b x3 -> (C(2,2) + C(3,2)) / C(5,2) = (1 + 3) / 10 = 0.4
    # lift = 0.5 / 0.4 = 1.25
    assert out["pairs_same_code"] == 4 and out["labelled_items"] == 5
    assert out["p_same_label_same_code"] == pytest.approx(0.5)
    assert out["p_same_label_random"] == pytest.approx(0.4)
    assert out["lift"] == pytest.approx(1.25)


def test_semantic_coherence_without_pairs_is_none():
    out = semantic_coherence(np.array([0, 1]), ["a", None])
    assert out["pairs_same_code"] == 0 and out["labelled_items"] == 1
    assert out["p_same_label_same_code"] is None and out["lift"] is None


def test_golden_reconstruction():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    x_hat = np.array([[0.0, 1.0], [2.0, 0.0]])
    # squared errors per item: 1, 0 -> mean 0.5
    assert reconstruction_mse(x, x_hat) == pytest.approx(0.5)
    # mean(x) = (1, 0): spread = 1 + 1 = 2 -> relative error 1 / 2
    assert relative_reconstruction_error(x, x_hat) == pytest.approx(0.5)
    # predicting the mean everywhere scores exactly 1
    assert relative_reconstruction_error(x, np.array([[1.0, 0.0]] * 2)) == pytest.approx(1.0)


# ---- properties ---------------------------------------------------------------------------


@st.composite
def code_tables(draw, max_n: int = 24) -> tuple[np.ndarray, int]:
    """Small (N, L) tables over few codes, so collisions and full prefixes are common."""
    k = draw(st.integers(1, 4))
    depth = draw(st.integers(1, 3))
    n = draw(st.integers(0, max_n))
    flat = draw(st.lists(st.integers(0, k - 1), min_size=n * depth, max_size=n * depth))
    return np.array(flat, dtype=np.int64).reshape(n, depth), k


def brute_shared(codes: np.ndarray) -> dict[tuple, list[int]]:
    seen: dict[tuple, list[int]] = {}
    for i, row in enumerate(codes.tolist()):
        seen.setdefault(tuple(row), []).append(i)
    return {c: m for c, m in seen.items() if len(m) >= 2}


def is_unique(codes: np.ndarray) -> bool:
    return len({tuple(r) for r in codes.tolist()}) == len(codes)


@settings(deadline=None)
@given(code_tables())
def test_collision_rate_matches_brute_force(table):
    codes, _ = table
    shared = brute_shared(codes)
    rate = collision_rate(codes)
    assert 0.0 <= rate <= 1.0
    assert (rate == 0.0) == is_unique(codes)
    n_shared = sum(len(m) for m in shared.values())
    assert rate == pytest.approx(n_shared / len(codes) if len(codes) else 0.0)
    assert [g.tolist() for g in collision_groups(codes)] == sorted(shared.values())
    rates = prefix_collision_rates(codes)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] == rate


@settings(deadline=None)
@given(code_tables())
def test_suffix_makes_codes_unique(table):
    codes, _ = table
    out = dedup_suffix(codes)
    assert out.shape == (codes.shape[0], codes.shape[1] + 1)
    assert np.array_equal(out[:, :-1], codes)
    assert is_unique(out)
    ensure_unique(out)
    shared = brute_shared(codes)
    for members in shared.values():
        assert out[members, -1].tolist() == list(range(len(members)))
    alone = [i for i in range(len(codes)) if not any(i in m for m in shared.values())]
    assert (out[alone, -1] == 0).all()


@settings(deadline=None)
@given(code_tables(), st.data())
def test_reassign_makes_codes_unique_when_feasible(table, data):
    codes, k = table
    n = len(codes)
    # small integer costs: many ties exercise the deterministic tie-breaks
    cost = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n * k, max_size=n * k)),
                    dtype=np.float64).reshape(n, k)
    prefix_sizes: dict[tuple, int] = {}
    for row in codes[:, :-1].tolist():
        prefix_sizes[tuple(row)] = prefix_sizes.get(tuple(row), 0) + 1
    if any(size > k for size in prefix_sizes.values()):
        with pytest.raises(SgrecError, match="--dedup suffix"):
            dedup_reassign(codes, cost, K=k)
        return
    out = dedup_reassign(codes, cost, K=k)
    assert out.shape == codes.shape
    assert np.array_equal(out[:, :-1], codes[:, :-1])
    assert ((out >= 0) & (out < k)).all()
    assert is_unique(out)
    ensure_unique(out)
    assert np.array_equal(dedup_reassign(codes, cost, K=k), out)  # deterministic
    # exactly one item of each collision group stays: one with the lowest own cost
    changed = (out != codes).any(axis=1)
    shared = brute_shared(codes)
    assert changed.sum() == sum(len(m) - 1 for m in shared.values())
    for members in shared.values():
        kept = [i for i in members if not changed[i]]
        assert len(kept) == 1
        own = [cost[i, codes[i, -1]] for i in members]
        assert cost[kept[0], codes[kept[0], -1]] == min(own)


@settings(deadline=None)
@given(code_tables())
def test_level_usage_bounds(table):
    codes, k = table
    for row in level_usage(codes, k):
        assert 0 <= row["used"] <= k and 0.0 <= row["utilisation"] <= 1.0
        assert 0.0 <= row["entropy_bits"] <= math.log2(k) + 1e-9
        if len(codes):
            assert 1.0 - 1e-9 <= row["perplexity"] <= row["used"] + 1e-9
