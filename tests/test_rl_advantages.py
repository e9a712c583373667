"""A2PO maths (docs/design.md §7): hand-computed golden cases, plus property tests of the gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sgrec_cli.errors import ConfigError
from sgrec_cli.rl.advantages import (
    MODES,
    asymmetric_gate,
    clipped_surrogate,
    combine,
    credit_rewards,
    distance_credit,
    distill_rewards,
    judge_mask,
    k3_kl,
    prefix_rewards,
    rank_penalty_rewards,
    ranker_rewards,
    standardise,
    target_rank,
    value_rewards,
)

S3 = math.sqrt(3.0)
S5 = math.sqrt(5.0)

# ---- rewards: golden cases ----------------------------------------------------------------------


def test_golden_rank_penalty_g3():
    # w_k = 1/log2(k+2): 1/log2(2) = 1, 1/log2(3) = 0.63093, 1/log2(4) = 0.5; W = 2.13093
    # target at rank 1 -> [-1/2.13093, 1, -0.5/2.13093] = [-0.46928, 1, -0.23464]
    # target absent (-1) -> all 0
    r = rank_penalty_rewards(np.array([1, -1]), 3)
    assert r.shape == (2, 3)
    assert r[0] == pytest.approx([-0.469279, 1.0, -0.234639], abs=1e-6)
    assert r[1].tolist() == [0.0, 0.0, 0.0]


def test_golden_rank_penalty_target_first():
    # G = 2, hit at rank 0: W = 1 + 0.63093 = 1.63093; the wrong item at rank 1 gets -0.63093 / W
    r = rank_penalty_rewards(np.array([0]), 2)
    assert r[0] == pytest.approx([1.0, -0.630930 / 1.630930], abs=1e-6)


def test_rank_penalty_rejects_bad_ranks():
    with pytest.raises(ValueError):
        rank_penalty_rewards(np.array([3]), 3)
    with pytest.raises(ValueError):
        rank_penalty_rewards(np.array([-2]), 3)


def test_golden_target_rank():
    items = np.array([[7, 3, 9], [1, 2, 4]])
    assert target_rank(items, np.array([9, 5])).tolist() == [2, -1]


def test_golden_prefix_rewards():
    # L = 3, target (1, 2, 3):
    #   (1, 2, 3) all 3 levels -> 3/3;  (1, 2, 0) 2 leading -> 2/3
    #   (1, 0, 3) 1 leading (the 3rd matches, but after a miss) -> 1/3;  (0, 2, 3) -> 0
    codes = np.array([[[1, 2, 3], [1, 2, 0], [1, 0, 3], [0, 2, 3]]])
    r = prefix_rewards(codes, np.array([[1, 2, 3]]))
    assert r[0] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])


def test_golden_value_rewards():
    # G = 3, hit at rank 1, values (2, 5, 4): rank penalty [-0.46928, 1, -0.23464] times values
    #   -> [-0.93856, 5, -0.93856]; no hit -> zeros whatever the values
    r = value_rewards(np.array([1, -1]), np.array([[2.0, 5.0, 4.0], [3.0, 3.0, 3.0]]))
    assert r[0] == pytest.approx([-0.938557, 5.0, -0.938557], abs=1e-6)
    assert r[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        value_rewards(np.array([0]), np.array([[-1.0, 2.0]]))
    with pytest.raises(ValueError):
        value_rewards(np.array([0]), np.array([[1.0, 2.0], [1.0, 2.0]]))


def test_golden_ranker_rewards():
    # three groups of G = 4: three items, two tied items, one item (NaN = no item)
    nan = np.nan
    s = np.array([[-1.0, -3.0, -2.0, nan], [-0.5, -0.5, nan, nan], [-2.0, nan, nan, nan]])
    # logprob: s / T, no item -> 0
    assert ranker_rewards(s, "logprob", 2.0).tolist() == [[-0.5, -1.5, -1.0, 0.0],
                                                          [-0.25, -0.25, 0.0, 0.0],
                                                          [-1.0, 0.0, 0.0, 0.0]]
    # rank: row 0 ranks item 0 (-1) first, item 2 (-2) second, item 1 (-3) last -> 1, 0, 0.5;
    # two tied items share ranks 0 and 1 -> 0.5 each; a group of one item has no order -> 0
    assert ranker_rewards(s, "rank").tolist() == [[1.0, 0.0, 0.5, 0.0], [0.5, 0.5, 0.0, 0.0],
                                                  [0.0, 0.0, 0.0, 0.0]]
    # ties among more: scores -1, -2, -1, -3 -> ranks 0.5, 2, 0.5, 3 of 3 -> 5/6, 1/3, 5/6, 0
    assert ranker_rewards(np.array([[-1.0, -2.0, -1.0, -3.0]]), "rank")[0] == pytest.approx(
        [5 / 6, 1 / 3, 5 / 6, 0.0])
    # prob at T = 1: e^-1, e^-3, e^-2 over their sum 0.553001
    p = ranker_rewards(s, "prob")
    assert p[0] == pytest.approx([0.665241, 0.090031, 0.244728, 0.0], abs=1e-6)
    assert p[1].tolist() == [0.5, 0.5, 0.0, 0.0] and p[2].tolist() == [1.0, 0.0, 0.0, 0.0]
    # at T = 2: e^-0.5, e^-1.5, e^-1 over 1.197540 (flatter)
    assert ranker_rewards(s, "prob", 2.0)[0] == pytest.approx([0.506480, 0.186324, 0.307196, 0],
                                                              abs=1e-6)
    # a dense reward: every group of two or more items scored apart has variance
    assert (ranker_rewards(s, "logprob")[:1].std(axis=1) > 0).all()
    for bad in ([[0.5, -1.0]], [[-np.inf, -1.0]]):
        with pytest.raises(ValueError, match="finite and <= 0"):
            ranker_rewards(np.array(bad), "rank")
    with pytest.raises(ValueError, match="shape 'ctr'"):
        ranker_rewards(s, "ctr")
    with pytest.raises(ValueError, match="temperature"):
        ranker_rewards(s, "prob", 0.0)


def test_golden_distill_rewards_and_their_unscaled_advantage():
    # the ranker's group softmax (the prob shape above: 0.665241, 0.090031, 0.244728) minus the
    # policy's over the same items: log-probs log .2, log .1, log .1 -> 0.5, 0.25, 0.25
    nan = np.nan
    s = np.array([[-1.0, -3.0, -2.0, nan], [-0.5, -0.5, nan, nan]])
    lp = np.array([[math.log(0.2), math.log(0.1), math.log(0.1), -np.inf],
                   [-4.0, -1.0, -np.inf, -np.inf]])
    gap = distill_rewards(s, lp)
    assert gap[0] == pytest.approx([0.165241, -0.159969, -0.005272, 0.0], abs=1e-6)
    # two tied items under the ranker: 1/2 each, the policy's e^-4 : e^-1 = 0.047426 : 0.952574
    assert gap[1] == pytest.approx([0.452574, -0.452574, 0.0, 0.0], abs=1e-6)
    assert gap.sum(axis=1) == pytest.approx([0.0, 0.0], abs=1e-12)
    # unscaled: the business advantage is the gap itself (its group mean is 0), not standardised
    a, _ = combine(gap, None, "biz", scale_biz=False)
    assert a == pytest.approx(gap, abs=1e-12)
    assert not np.allclose(combine(gap, None, "biz")[0], gap)
    # a policy that already ranks the group as the ranker does gets no update
    assert distill_rewards(s[:1], s[:1]) == pytest.approx(np.zeros((1, 4)), abs=1e-12)
    # identical items (a sampled group of copies): zero advantage
    same = np.array([[-2.5] * 4])
    assert np.array_equal(combine(distill_rewards(same, same - 1.0), None, "biz",
                                  scale_biz=False)[0], np.zeros((1, 4)))
    # a fused teacher, w = 1/2: softmax(s / 2 + l_ref / 2) is the normalised geometric mean
    # of the ranker's (0.665241, 0.090031, 0.244728) and the reference's (0.5, 0.25, 0.25)
    # distributions: sqrt of their products 0.576733, 0.150023, 0.247350 over 0.974106
    # -> 0.592062, 0.154013, 0.253925; the policy here is the reference, so the gap is that
    # minus (0.5, 0.25, 0.25)
    fused = distill_rewards(s[:1], lp[:1], weight=0.5, ref_log_probs=lp[:1])
    assert fused[0] == pytest.approx([0.092062, -0.095987, 0.003925, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="needs the reference"):
        distill_rewards(s, lp, weight=0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        distill_rewards(s, lp, weight=0.0, ref_log_probs=lp)
    with pytest.raises(ValueError, match="must match"):
        distill_rewards(s, lp[:, :3])
    with pytest.raises(ValueError, match="must be finite"):
        distill_rewards(s, np.full_like(lp, -np.inf))
    with pytest.raises(ValueError, match="distill_rewards"):
        ranker_rewards(s, "distill")


# ---- standardise and the gate: golden cases -----------------------------------------------------


@pytest.mark.parametrize("shape", ["logprob", "rank", "prob"])
def test_a_group_of_one_item_repeated_has_zero_advantage(shape):
    # a sampled group that drew the same item G times: the ranker scores the copies alike, so
    # every shape rewards them alike and the business advantage is exactly 0
    s = np.array([[-2.5] * 4, [-0.1] * 4])
    a, stats = combine(ranker_rewards(s, shape, 2.0), None, "biz")
    assert np.array_equal(a, np.zeros((2, 4))) and stats["biz_var_share"] == 0.0


def test_golden_standardise():
    # [1, 2, 3, 6]: mean 3, deviations (-2, -1, 0, 3), squares 4+1+0+9 = 14, var 14/4 = 3.5,
    # std 1.870829 -> (-1.069045, -0.534522, 0, 1.603567)
    a = standardise(np.array([[1.0, 2.0, 3.0, 6.0]]), eps=0.0)
    assert a[0] == pytest.approx([-1.069045, -0.534522, 0.0, 1.603567], abs=1e-6)


def test_standardise_constant_group_is_exactly_zero():
    # 0.1 * 3 / 3 != 0.1 in floating point; the group must still give exact zeros, not ~1e-11
    a = standardise(np.array([[0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]))
    assert a.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_golden_gate_pairs():
    # (1, 0.5)    same sign: 0.5 / 1 = 0.5
    # (-0.5, -2)  same sign: 0.5 / 2 = 0.25
    # (1, -1)     opposite signs: 0
    # (0, 0.7)    sign 0 != sign +: 0
    # (0, 0)      same "sign" 0, but 0 / (0 + eps) = 0
    # (1, NaN)    missing: 0
    a_biz = np.array([1.0, -0.5, 1.0, 0.0, 0.0, 1.0])
    a_sem = np.array([0.5, -2.0, -1.0, 0.7, 0.0, np.nan])
    lam = asymmetric_gate(a_biz, a_sem, eps=1e-6)
    assert lam == pytest.approx([0.5, 0.25, 0.0, 0.0, 0.0, 0.0], abs=1e-5)


# ---- combine: one 1x4 group in every mode -------------------------------------------------------

R_BIZ = np.array([[1.0, 0.0, 0.0, 0.0]])
R_SEM = np.array([[0.8, 0.2, 0.6, 0.4]])
# A_biz: mean 0.25, deviations (.75, -.25, -.25, -.25), var (.5625 + 3 * .0625) / 4 = .1875,
#        std .433013 -> (sqrt 3, -1/sqrt 3, -1/sqrt 3, -1/sqrt 3) = (1.732051, -0.577350 x3)
A_BIZ = [S3, -1 / S3, -1 / S3, -1 / S3]
# A_sem: mean .5, deviations (.3, -.3, .1, -.1), var .2 / 4 = .05, std .223607
#        -> (3/sqrt 5, -3/sqrt 5, 1/sqrt 5, -1/sqrt 5) = (1.341641, -1.341641, .447214, -.447214)
A_SEM = [3 / S5, -3 / S5, 1 / S5, -1 / S5]


def test_golden_combine_biz():
    adv, _ = combine(R_BIZ, R_SEM, "biz")
    assert adv[0] == pytest.approx(A_BIZ, rel=1e-5)


def test_golden_combine_reward_sum():
    # r = r_biz + r_sem = (1.8, .2, .6, .4): mean .75, deviations (1.05, -.55, -.15, -.35),
    # squares 1.1025 + .3025 + .0225 + .1225 = 1.55, var .3875, std .622495
    # -> (1.686760, -0.883541, -0.240966, -0.562254)
    adv, _ = combine(R_BIZ, R_SEM, "reward-sum")
    assert adv[0] == pytest.approx([1.686760, -0.883541, -0.240966, -0.562254], rel=1e-5)


def test_golden_combine_adv_sum():
    # A_biz + A_sem = (1.732051 + 1.341641, -0.577350 - 1.341641, -0.577350 + 0.447214,
    #                  -0.577350 - 0.447214) = (3.073692, -1.918991, -0.130136, -1.024564)
    # (eps = 1e-6 in std + eps moves the 6th significant digit, hence abs=3e-5)
    adv, _ = combine(R_BIZ, R_SEM, "adv-sum")
    assert adv[0] == pytest.approx([3.073692, -1.918991, -0.130136, -1.024564], abs=3e-5)


def test_golden_combine_a2po():
    # i0: both +, lambda = (3/sqrt5) / sqrt3 = sqrt(3/5) = .774597;
    #     A = sqrt3 + .774597 * 3/sqrt5 = sqrt3 + 3 sqrt3/5 = 8 sqrt3/5 = 2.771281
    # i1: both -, lambda = (1/sqrt3) / (3/sqrt5) = .430331; lambda |A_sem| = 1/sqrt3, so
    #     A = -2/sqrt3 = -1.154701 (the factor-2 ceiling)
    # i2: A_biz -, A_sem +: lambda = 0, A = A_biz = -0.577350 (semantics cannot flip it)
    # i3: both -, lambda = (1/sqrt5) / (1/sqrt3) = .774597;
    #     A = -1/sqrt3 - .774597/sqrt5 = -1/sqrt3 - sqrt3/5 = -8/(5 sqrt3) = -0.923760
    adv, stats = combine(R_BIZ, R_SEM, "a2po")
    assert adv[0] == pytest.approx([8 * S3 / 5, -2 / S3, -1 / S3, -8 / (5 * S3)], rel=1e-5)
    # sign agreement: i0, i1, i3 agree, i2 does not -> 3/4;
    # mean lambda = (.774597 + .430331 + 0 + .774597) / 4 = .494881
    assert stats["sign_agreement"] == pytest.approx(0.75)
    assert stats["positive_agreement"] == 1.0  # i0, the one A_biz > 0, has A_sem > 0
    assert stats["mean_lambda"] == pytest.approx(0.494881, abs=1e-5)
    assert stats["semantic_share"] == 1.0
    assert stats["biz_var_share"] == 1.0
    assert stats["mean_r_biz"] == pytest.approx(0.25)
    assert stats["mean_r_sem"] == pytest.approx(0.5)


def test_positive_agreement_counts_only_positive_entries_of_semantic_groups():
    # row 0: A_biz > 0 at i0, the judge puts i0 above its mean -> agrees
    # row 1: A_biz > 0 at i0, the judge puts i0 below its mean -> disagrees
    # row 2: not judged -> ignored; row 3: no business variance (A_biz = 0) -> no positive entry
    r_biz = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [1.0, 0, 0, 0], [0.0, 0, 0, 0]])
    r_sem = np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.9, 0.2, 0.3], [0.1, 0.9, 0.2, 0.3],
                      [0.9, 0.1, 0.2, 0.3]])
    _, stats = combine(r_biz, r_sem, "a2po", np.array([True, True, False, True]))
    assert stats["positive_agreement"] == pytest.approx(0.5)
    # sign agreement over all 8 entries of rows 0-1: row 0 agrees at i0 and at the three
    # negatives below .375 (.1, .2, .3) -> 4; row 1 agrees at i2, i3 (.2, .3 < .375) -> 2; 6/8
    assert stats["sign_agreement"] == pytest.approx(0.75)


def test_combine_unjudged_and_missing_groups_fall_back_to_biz():
    # row 0 not judged; row 1 judged but one semantic reward is missing; row 2 judged, complete
    r_biz = np.repeat(R_BIZ, 3, axis=0)
    r_sem = np.repeat(R_SEM, 3, axis=0)
    r_sem[1, 2] = np.nan
    judged = np.array([False, True, True])
    for mode in MODES:
        adv, stats = combine(r_biz, r_sem, mode, judged)
        assert adv[0] == pytest.approx(A_BIZ, rel=1e-5), mode
        assert adv[1] == pytest.approx(A_BIZ, rel=1e-5), mode
        assert not np.isnan(adv).any()
        assert stats["semantic_share"] == pytest.approx(1 / 3)
    adv, _ = combine(r_biz, r_sem, "adv-sum", judged)
    assert adv[2] == pytest.approx(np.add(A_BIZ, A_SEM), rel=1e-5)


def test_combine_without_judge_and_undefined_stats():
    # no semantic rewards at all: every mode is plain GRPO on r_biz; gate stats are undefined
    for mode in MODES:
        adv, stats = combine(R_BIZ, None, mode)
        assert adv[0] == pytest.approx(A_BIZ, rel=1e-5)
        assert stats["sign_agreement"] is None and stats["mean_lambda"] is None
        assert stats["positive_agreement"] is None
        assert stats["mean_r_sem"] is None and stats["semantic_share"] == 0.0


def test_combine_rejects_unknown_mode_in_one_line():
    with pytest.raises(ConfigError) as err:
        combine(R_BIZ, R_SEM, "ppo")
    message = str(err.value)
    assert "'ppo'" in message and "a2po" in message and "reward-sum" in message
    assert "\n" not in message


def test_combine_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        combine(R_BIZ, R_SEM[:, :3], "a2po")
    with pytest.raises(ValueError):
        combine(R_BIZ, R_SEM, "a2po", np.array([True, False]))


# ---- loss pieces: golden cases ------------------------------------------------------------------


def test_golden_clipped_surrogate_two_tokens():
    # one rollout, A = +1, eps = 0.2; old probs (0.5, 0.5), new (0.75, 0.55) -> ratios (1.5, 1.1)
    # token 0: min(1.5 * 1, clip(1.5) = 1.2) = 1.2 (clipped);  token 1: min(1.1, 1.1) = 1.1
    # loss = -(1.2 + 1.1) / 2 = -1.15; clip fraction 1/2
    # d loss / d logp_new: token 0 is clipped -> 0; token 1: -ratio * A / 2 = -0.55
    logp_new = torch.log(torch.tensor([[0.75, 0.55]], dtype=torch.float64)).requires_grad_()
    logp_old = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, clip_fraction = clipped_surrogate(logp_new, logp_old, torch.tensor([1.0]), mask, 0.2)
    assert loss.item() == pytest.approx(-1.15)
    assert clip_fraction.item() == pytest.approx(0.5)
    loss.backward()
    assert logp_new.grad[0].tolist() == pytest.approx([0.0, -0.55])


def test_golden_clipped_surrogate_negative_advantage_and_mask():
    # row 0: A = +1, ratios (1.5, 1.1, [masked 9.0]) -> 1.2 (clipped), 1.1
    # row 1: A = -2, ratios (1.5, 0.7, [masked 0.1]):
    #   token 0: min(-3.0, -2.4) = -3.0 (unclipped: a worse move is not capped)
    #   token 1: min(-1.4, clip(0.7) = 0.8 -> -1.6) = -1.6 (clipped)
    # loss = -(1.2 + 1.1 - 3.0 - 1.6) / 4 = 0.575; clip fraction 2/4
    ratios = torch.tensor([[1.5, 1.1, 9.0], [1.5, 0.7, 0.1]], dtype=torch.float64)
    logp_old = torch.full((2, 3), math.log(0.1), dtype=torch.float64)
    logp_new = logp_old + torch.log(ratios)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, clip_fraction = clipped_surrogate(logp_new, logp_old, adv, mask, 0.2)
    assert loss.item() == pytest.approx(0.575)
    assert clip_fraction.item() == pytest.approx(0.5)


def test_golden_k3_kl():
    # token 0: new 0.5, ref 0.25: d = log(0.25/0.5) = -0.693147, e^d = 0.5
    #          k3 = 0.5 + 0.693147 - 1 = 0.193147
    # token 1: new 0.2, ref 0.4: d = log 2 = 0.693147, e^d = 2, k3 = 2 - 0.693147 - 1 = 0.306853
    # token 2: masked out; mean = (0.193147 + 0.306853) / 2 = 0.25
    logp_new = torch.log(torch.tensor([[0.5, 0.2, 0.9]], dtype=torch.float64))
    logp_ref = torch.log(torch.tensor([[0.25, 0.4, 0.01]], dtype=torch.float64))
    mask = torch.tensor([[True, True, False]])
    assert k3_kl(logp_new, logp_ref, mask).item() == pytest.approx(0.25)
    assert k3_kl(logp_new, logp_new, mask).item() == 0.0


def test_loss_pieces_reject_bad_shapes():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError):
        clipped_surrogate(x, x, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError):
        k3_kl(x, torch.zeros(2, 2), torch.ones(2, 3))


# ---- judge_mask ---------------------------------------------------------------------------------


def test_judge_mask_extremes_and_determinism():
    assert not judge_mask(50, 0.0, np.random.default_rng(0)).any()
    assert judge_mask(50, 1.0, np.random.default_rng(0)).all()
    a = judge_mask(200, 0.3, np.random.default_rng(7))
    b = judge_mask(200, 0.3, np.random.default_rng(7))
    assert a.dtype == bool and a.shape == (200,)
    assert np.array_equal(a, b)
    # per-group draws: the share is rho on average (sd of the share here: sqrt(.05*.95/20000))
    share = judge_mask(20_000, 0.05, np.random.default_rng(1)).mean()
    assert abs(share - 0.05) < 0.01
    with pytest.raises(ConfigError):
        judge_mask(10, 1.5, np.random.default_rng(0))


# ---- properties ---------------------------------------------------------------------------------

# rewards drawn from a few levels, so ties and zero-variance groups are common
_levels = st.sampled_from([-1.0, -0.25, 0.0, 0.3, 1.0])


@st.composite
def groups(draw, elements=_levels):
    b = draw(st.integers(1, 4))
    g = draw(st.integers(2, 8))
    r_biz = draw(hnp.arrays(np.float64, (b, g), elements=elements))
    r_sem = draw(hnp.arrays(np.float64, (b, g), elements=st.floats(0.0, 1.0)))
    judged = draw(hnp.arrays(np.bool_, (b,)))
    return r_biz, r_sem, judged


@settings(max_examples=200, deadline=None)
@given(groups())
def test_a2po_keeps_the_business_sign_and_at_most_doubles(data):
    r_biz, r_sem, judged = data
    adv, _ = combine(r_biz, r_sem, "a2po", judged)
    a_biz = standardise(r_biz)
    assert np.array_equal(np.sign(adv), np.sign(a_biz))
    assert (np.abs(a_biz) <= np.abs(adv) + 1e-12).all()
    assert (np.abs(adv) <= 2 * np.abs(a_biz) + 1e-9).all()


_finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.one_of(st.just(0.0), _finite)),
       hnp.arrays(np.float64, st.integers(1, 30), elements=st.one_of(st.just(0.0), _finite)))
def test_gate_lies_in_unit_interval(a_biz, a_sem):
    n = min(a_biz.size, a_sem.size)
    lam = asymmetric_gate(a_biz[:n], a_sem[:n])
    assert ((lam >= 0) & (lam <= 1)).all()
    assert (lam[np.sign(a_biz[:n]) != np.sign(a_sem[:n])] == 0).all()


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 10)),
                  elements=st.floats(-100, 100)))
def test_standardise_gives_mean_zero_unit_std(r):
    a = standardise(r)
    for row_r, row_a in zip(r, a, strict=True):
        if row_r.std() > 1e-2:
            # std(A) = s / (s + eps) >= 1 - 1e-4 for s > 1e-2
            assert abs(row_a.mean()) < 1e-8
            assert row_a.std() == pytest.approx(1.0, abs=1e-3)
        elif row_r.max() == row_r.min():
            assert (row_a == 0).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8), st.floats(-1, 1), hnp.arrays(np.float64, 8, elements=st.floats(0, 1)))
def test_no_business_variance_means_no_a2po_advantage(g, level, sem):
    r_biz = np.full((1, g), level)
    r_sem = sem[None, :g]
    adv, stats = combine(r_biz, r_sem, "a2po")
    assert (adv == 0).all()  # whatever r_sem says: semantics never create a direction
    assert stats["biz_var_share"] == 0.0
    adv_sum, _ = combine(r_biz, r_sem, "adv-sum")
    assert adv_sum == pytest.approx(standardise(r_sem))  # adv-sum does create one
    if r_sem.max() > r_sem.min():
        assert (adv_sum != 0).any()


@settings(max_examples=200, deadline=None)
@given(groups(), st.data())
def test_nan_semantic_rewards_fall_back_to_business(data, draw):
    r_biz, r_sem, judged = data
    b, g = r_biz.shape
    holes = draw.draw(hnp.arrays(np.bool_, (b, g)))
    r_sem = np.where(holes, np.nan, r_sem)
    missing = holes.any(axis=1)
    a_biz = standardise(r_biz)
    for mode in MODES:
        adv, _ = combine(r_biz, r_sem, mode, judged)
        assert not np.isnan(adv).any()
        fallback = missing | ~judged
        assert np.array_equal(adv[fallback], a_biz[fallback]), mode


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 16), st.lists(st.integers(-1, 15), min_size=1, max_size=6))
def test_rank_penalty_shape(g, ranks):
    ranks = np.array([min(k, g - 1) for k in ranks])
    r = rank_penalty_rewards(ranks, g)
    for row, k in zip(r, ranks, strict=True):
        if k < 0:
            assert (row == 0).all()
            continue
        assert row[k] == 1.0
        wrong = np.delete(row, k)
        # wrong items are penalised, earlier (more visible) ranks the most
        assert (wrong < 0).all() and (np.diff(wrong) > 0).all()
        assert wrong.sum() >= -1.0


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)),
                  elements=st.floats(-3, 0)),
       hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)),
                  elements=st.floats(-3, 0)))
def test_k3_is_non_negative(new, ref):
    n, t = min(new.shape[0], ref.shape[0]), min(new.shape[1], ref.shape[1])
    new, ref = torch.from_numpy(new[:n, :t]), torch.from_numpy(ref[:n, :t])
    assert k3_kl(new, ref, torch.ones(n, t)).item() >= 0.0


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, 4, elements=st.floats(-2, 2)),
       hnp.arrays(np.bool_, (4, 3)))
def test_on_policy_surrogate_is_minus_mean_advantage(adv, mask):
    # ratio = 1 everywhere: nothing is clipped and the loss is -(token-weighted mean of A)
    logp = torch.full((4, 3), -1.0, dtype=torch.float64)
    m = torch.from_numpy(mask)
    loss, clip_fraction = clipped_surrogate(logp, logp, torch.from_numpy(adv), m)
    n_tokens = mask.sum(axis=1)
    expected = -(adv * n_tokens).sum() / max(n_tokens.sum(), 1)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert clip_fraction.item() == 0.0


def test_credit_rewards_golden():
    # G = 3: w = [1, 1/log2(3), 1/2] = [1, 0.63093, 0.5], W = 2.13093.
    # group 0: a later item at distance 1 (credit 1/log2(3) = 0.63093), a wrong item at rank 1
    # (-0.63093 / 2.13093 = -0.29608), the next item (1); group 1: nothing credited -> all 0
    credit = np.array([[1 / np.log2(3), 0.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(credit_rewards(credit),
                               [[0.63093, -0.29608, 1.0], [0.0, 0.0, 0.0]], atol=1e-5)
    # only the next item credited: exactly the rank-penalty reward
    only = np.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(credit_rewards(only), rank_penalty_rewards(np.array([1]), 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        credit_rewards(np.array([[1.5, 0.0]]))


def test_distance_credit_is_the_ndcg_discount():
    # d = 0 (the next item) -> 1; d = 1 -> 1/log2(3) = 0.63093; d = 2 -> 1/2; never -> 0
    np.testing.assert_allclose(distance_credit(np.array([0.0, 1.0, 2.0, np.nan])),
                               [1.0, 0.63093, 0.5, 0.0], atol=1e-5)
