"""A2PO maths (docs/design.md §7): group rewards, group advantages, the asymmetric gate, the loss
pieces.

A training user x gets a group of G distinct candidate items y_0..y_{G-1} (beam rank k = 0..G-1);
B groups are processed at once, so every reward and advantage array is shaped (B, G).

Business rewards (one of)::

    rank penalty   r_k = 1 if y_k is the target; else, when the target is in the group,
                   r_k = -w_k / W  with  w_k = 1 / log2(k + 2),  W = sum_{j<G} w_j;
                   all 0 when the target is not in the group (no hit: no business signal)
    SID prefix     r_k = (number of leading SID levels of y_k equal to the target's) / L,
                   so the target gets 1 and an item sharing no first code gets 0 (dense proxy)
    value          r_k = v(y_k) * rank-penalty r_k: the hit gets v(target), a wrong item at rank
                   k gets -v(y_k) w_k / W (a costly wrong item is pushed down harder), 0 with no hit
    future         the rank penalty with credit for what the user did take: the next item 1, an
                   item the user takes d steps after it (later in the *training* sequence)
                   1 / log2(d + 2); every other item -w_k / W when the group holds any credited
                   item, all 0 otherwise (so the user's later items are not pushed down)
    ranker         a ranking model's opinion of each item given the same history (the run's
                   SASRec): with s_k = log p_ranker(y_k | history) over the whole catalogue,
                   logprob  r_k = s_k / T
                   rank     r_k = 1 - q_k / (n - 1), q_k = y_k's rank among the group's n items
                            by s (0 = the ranker's favourite; ties by beam rank), 0 when n = 1
                   prob     r_k = softmax_k(s / T) over the group's items
                   distill  r_k = softmax_k(z_k / T) - softmax_k(l_k) over the group's items,
                            l_k = log pi(y_k | history) under the rollout policy and the
                            teacher's z_k = w s_k + (1 - w) l_ref,k (l_ref: the frozen SFT
                            reference's; w = --ranker-weight, 1 = the ranker alone): the gap
                            between the teacher's and the policy's distributions over the
                            group. It sums to 0 and is used *unscaled* as the business
                            advantage (below), so the update is the gradient of the cross-
                            entropy from the teacher's group distribution to the policy's, and
                            it vanishes once the policy ranks the group as the teacher does
                   plus h * the rank penalty above (--hit-weight h mixes the hit back in).
                   Dense: a group has variance unless the ranker scores all its items alike

Semantic reward r_sem = s_hol(x, y_k) from the judge; NaN = missing.

Group standardisation (population std; a zero-variance group gives 0, not 0/eps noise)::

    A_i = (r_i - mean_g r) / (std_g r + eps)

except for the ``distill`` ranker shape, whose business advantage is centred only
(A_i = r_i - mean_g r, Dr. GRPO's advantage), so its size stays the size of the gap.

Asymmetric gate and the combined advantage (mode ``a2po``)::

    lambda_i = 1[sign A_biz,i = sign A_sem,i] * min(|A_biz,i|, |A_sem,i|)
                                              / (max(|A_biz,i|, |A_sem,i|) + eps)
    A_i      = A_biz,i + lambda_i * A_sem,i

lambda_i lies in [0, 1), so sign A_i = sign A_biz,i (A_i = 0 where A_biz,i = 0) and
|A_biz,i| <= |A_i| <= 2 |A_biz,i|: semantics can amplify a business direction, never flip or
create one. The ablations: ``biz`` (A = A_biz), ``reward-sum`` (standardise r_biz + r_sem),
``adv-sum`` (A_biz + A_sem). Groups the judge did not see (fraction 1 - rho) or with any NaN
semantic reward use A = A_biz (``reward-sum``: standardise r_biz alone).

Options on top (business-only ``biz``): sibling advantages give each SID token its own
advantage, standardised among the group's rollouts that share the token's parent prefix
(``sibling_advantages``); the positive-only filter sets negative advantages to 0
(``positive_part``).

Loss pieces over the SID tokens of the B*G rollouts (N = B*G sequences of T tokens)::

    ratio_t = exp(logp_new_t - logp_old_t)
    L_clip  = -mean_valid min(ratio_t A, clip(ratio_t, 1 - eps_c, 1 + eps_c) A)
    KL_k3   =  mean_valid exp(logp_ref_t - logp_new_t) - (logp_ref_t - logp_new_t) - 1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..maths import EPS, standardise

if TYPE_CHECKING:  # torch is imported by the loss pieces only, so the registry stays light
    import torch


@dataclass(frozen=True)
class AdvantageMode:
    """One way of turning rewards into advantages.

    ``semantic`` gives A for the groups that carry a semantic reward, from
    (a_biz, a_sem, r_biz, r_sem, lambda), all (S, G); None = those groups keep A_biz too, and the
    mode never needs the judge (``uses_judge`` False).
    """

    name: str
    help: str
    semantic: Callable[..., np.ndarray] | None = None

    @property
    def uses_judge(self) -> bool:
        return self.semantic is not None


def _reward_sum(a_biz, a_sem, r_biz, r_sem, lam, eps=EPS):
    return standardise(r_biz + r_sem, eps)


def _adv_sum(a_biz, a_sem, r_biz, r_sem, lam, eps=EPS):
    return a_biz + a_sem


def _a2po(a_biz, a_sem, r_biz, r_sem, lam, eps=EPS):
    return a_biz + lam * a_sem


# the registry: a new mode is one entry here (the CLI's --advantage choices come from it)
ADVANTAGES = {m.name: m for m in (
    AdvantageMode("a2po", "A_biz + lambda * A_sem, the asymmetric gate of S-GRec", _a2po),
    AdvantageMode("biz", "GRPO on the business reward alone, MiniOneRec's recipe"),
    AdvantageMode("reward-sum", "standardised r_biz + r_sem, an ablation", _reward_sum),
    AdvantageMode("adv-sum", "A_biz + A_sem without the gate, an ablation", _adv_sum),
)}
MODES = tuple(ADVANTAGES)
# business rewards (see the module docstring; computed in rl/a2po.py::business_rewards)
BUSINESS_REWARDS = ("rank", "prefix", "value", "future", "ranker")
RANKER_SHAPES = ("logprob", "rank", "prob", "distill")
UNSCALED_SHAPES = ("distill",)  # their business advantage is centred, not standardised


def advantage_mode(mode: str) -> AdvantageMode:
    if mode not in ADVANTAGES:
        raise ConfigError(f"--advantage {mode!r} is not known; use one of: {', '.join(MODES)}")
    return ADVANTAGES[mode]


# ---- business rewards ---------------------------------------------------------------------------


def target_rank(group_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Beam rank of the target in each group (B,), -1 where it is not in the group."""
    items = np.asarray(group_items)  # (B, G)
    hits = items == np.asarray(targets)[:, None]  # (B, G)
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)  # (B,)


def rank_penalty_rewards(hit_rank: np.ndarray, G: int) -> np.ndarray:
    """The default business reward (B, G): 1 for the hit, -w_k / W for a wrong item at rank k."""
    rank = np.asarray(hit_rank, dtype=np.int64).reshape(-1)  # (B,)
    if G < 1:
        raise ValueError(f"group size G must be >= 1, got {G}")
    if rank.size and (rank.min() < -1 or rank.max() >= G):
        raise ValueError(f"hit ranks must lie in [-1, {G - 1}], got {rank.min()}..{rank.max()}")
    w = 1.0 / np.log2(np.arange(G) + 2.0)  # (G,)
    r = np.broadcast_to(-w / w.sum(), (rank.size, G)).copy()  # (B, G)
    hit = rank >= 0
    r[~hit] = 0.0  # no hit in the group: no business signal at all
    r[np.flatnonzero(hit), rank[hit]] = 1.0
    return r


def prefix_rewards(group_codes: np.ndarray, target_codes: np.ndarray) -> np.ndarray:
    """Dense proxy (B, G): the share of leading SID levels each item shares with the target."""
    codes = np.asarray(group_codes)  # (B, G, L)
    target = np.asarray(target_codes)  # (B, L)
    if codes.ndim != 3 or target.shape != (codes.shape[0], codes.shape[2]):
        raise ValueError(f"group codes {codes.shape} must be (B, G, L), target codes "
                         f"{target.shape} (B, L)")
    same = codes == target[:, None, :]  # (B, G, L)
    leading = np.cumprod(same, axis=2).sum(axis=2)  # (B, G): levels matched before the first miss
    return leading / codes.shape[2]


def value_rewards(hit_rank: np.ndarray, group_values: np.ndarray) -> np.ndarray:
    """Value-weighted rank penalty (B, G): v(y_k) times the rank-penalty reward of y_k.

    The hit gets v(target). Standardisation removes any per-group scale, so what the values
    change is the spread: among wrong items the costly ones get the larger penalty.
    """
    values = np.asarray(group_values, dtype=np.float64)  # (B, G)
    if values.ndim != 2:
        raise ValueError(f"group values {values.shape} must be (B, G)")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("item values must be finite and >= 0")
    r = rank_penalty_rewards(hit_rank, values.shape[1])  # (B, G)
    if r.shape != values.shape:
        raise ValueError(f"{r.shape[0]} hit ranks for {values.shape[0]} groups of values")
    return values * r


def credit_rewards(credit: np.ndarray) -> np.ndarray:
    """Rank penalty with partial credit (B, G): ``credit`` (B, G) in [0, 1] is what each item is
    worth to the user (0 = wrong). Credited items get their credit; when a group holds any, its
    wrong item at rank k gets -w_k / W; a group with none gets 0 (no business signal)."""
    c = np.asarray(credit, dtype=np.float64)  # (B, G)
    if c.ndim != 2:
        raise ValueError(f"credit {c.shape} must be (B, G)")
    if not np.isfinite(c).all() or (c < 0).any() or (c > 1).any():
        raise ValueError("credit must lie in [0, 1]")
    w = 1.0 / np.log2(np.arange(c.shape[1]) + 2.0)  # (G,)
    r = np.where(c > 0, c, -w / w.sum())  # (B, G)
    r[~(c > 0).any(axis=1)] = 0.0
    return r


def ranker_rewards(log_probs: np.ndarray, shape: str, temperature: float = 1.0) -> np.ndarray:
    """The ranker's reward (B, G) of shape ``shape`` in RANKER_SHAPES from its log-probabilities
    (B, G) of the group's items; NaN marks no item (beam groups short of G), rewarded 0."""
    s = np.asarray(log_probs, dtype=np.float64)  # (B, G)
    if s.ndim != 2:
        raise ValueError(f"ranker log-probabilities {s.shape} must be (B, G)")
    if not temperature > 0:
        raise ValueError(f"temperature {temperature!r} must be > 0")
    here = ~np.isnan(s)  # (B, G)
    if np.isinf(s[here]).any() or (s[here] > 1e-6).any():
        raise ValueError("ranker log-probabilities must be finite and <= 0")
    if shape == "logprob":
        return np.where(here, s / temperature, 0.0)
    if shape == "rank":
        n = here.sum(axis=1, keepdims=True)  # (B, 1)
        # rank among the group's items by score, best first; tied items share their mean rank,
        # so that copies of one item (a sampled group) are rewarded alike
        a, b = s[:, :, None], s[:, None, :]  # (B, G, 1), (B, 1, G): item i against item j
        other = here[:, None, :]
        with np.errstate(invalid="ignore"):
            above = (other & (b > a)).sum(axis=2)
            tied = (other & (b == a)).sum(axis=2) - 1
        q = above + tied / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = 1.0 - q / (n - 1)
        return np.where(here & (n > 1), r, 0.0)
    if shape == "prob":
        return _group_softmax(s, here, temperature)
    if shape == "distill":
        raise ValueError("the distill shape needs the policy's log-probabilities: use "
                         "distill_rewards")
    raise ValueError(f"ranker reward shape {shape!r} is not one of {', '.join(RANKER_SHAPES)}")


def _group_softmax(s: np.ndarray, here: np.ndarray, temperature: float) -> np.ndarray:
    """softmax_k(s / T) over each row's items ``here`` (B, G); 0 elsewhere."""
    z = np.where(here, s / temperature, -np.inf)
    top = z.max(axis=1, keepdims=True)
    e = np.where(here, np.exp(z - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = e.sum(axis=1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def distill_rewards(ranker_log_probs: np.ndarray, policy_log_probs: np.ndarray,
                    temperature: float = 1.0, weight: float = 1.0,
                    ref_log_probs: np.ndarray | None = None) -> np.ndarray:
    """The distill shape (B, G): q - softmax_k(l) over each group's items, l the rollout
    policy's log-probabilities and q the teacher's group distribution softmax_k(s / T) from
    the ranker's s, or with ``weight`` w < 1 softmax_k((w s + (1 - w) l_ref) / T) from the
    reference's ``ref_log_probs`` l_ref too (NaN = no item, rewarded 0). Each row sums to 0
    over its items."""
    s = np.asarray(ranker_log_probs, dtype=np.float64)
    here = ~np.isnan(s)
    q = ranker_rewards(s, "prob", temperature)  # checks s and T

    def finite(x, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != s.shape:
            raise ValueError(f"{what} log-probabilities {x.shape} must match the ranker's "
                             f"{s.shape}")
        if not np.isfinite(x[here]).all():
            raise ValueError(f"{what} log-probabilities of the group's items must be finite")
        return np.where(here, x, 0.0)

    if not 0.0 < weight <= 1.0:
        raise ValueError(f"the ranker's weight {weight!r} must lie in (0, 1]")
    if weight < 1.0:
        if ref_log_probs is None:
            raise ValueError("a ranker weight below 1 needs the reference's log-probabilities")
        teacher = weight * np.where(here, s, 0.0) + (1.0 - weight) * finite(ref_log_probs,
                                                                             "reference")
        q = _group_softmax(teacher, here, temperature)
    return q - _group_softmax(finite(policy_log_probs, "policy"), here, 1.0)


def distance_credit(distance: np.ndarray) -> np.ndarray:
    """Credit of an item the user took ``distance`` steps after the next item (0 = the next item
    itself): 1 / log2(d + 2), the NDCG discount; NaN (never taken) -> 0."""
    d = np.asarray(distance, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(d), 0.0, 1.0 / np.log2(np.nan_to_num(d, nan=0.0) + 2.0))


# ---- group advantages ---------------------------------------------------------------------------




def asymmetric_gate(a_biz: np.ndarray, a_sem: np.ndarray, eps: float = EPS) -> np.ndarray:
    """lambda = 1[same sign] * min(|A_biz|, |A_sem|) / (max(...) + eps), in [0, 1); 0 at NaN."""
    a_biz = np.asarray(a_biz, dtype=np.float64)
    a_sem = np.asarray(a_sem, dtype=np.float64)
    abs_b, abs_s = np.abs(a_biz), np.abs(a_sem)
    with np.errstate(invalid="ignore"):
        ratio = np.minimum(abs_b, abs_s) / (np.maximum(abs_b, abs_s) + eps)
        agree = np.sign(a_biz) == np.sign(a_sem)  # False wherever either is NaN
    return np.where(agree, ratio, 0.0)


def combine(
    r_biz: np.ndarray,
    r_sem: np.ndarray | None,
    mode: str,
    judged_mask: np.ndarray | None = None,
    eps: float = EPS,
    scale_biz: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Advantages A (B, G) for ``mode`` in MODES, and per-batch statistics to log.

    ``scale_biz`` False: A_biz = r_biz - its group mean, not standardised (the distill shape).

    r_sem may be None (no judge: every group falls back to business only). judged_mask (B,)
    marks the groups the judge was consulted for (default: all). A group uses its semantic
    reward only when judged and free of NaN; the others get A = A_biz.

    stats (floats, None where undefined, ready for JSON):
      semantic_share   share of groups that used a semantic reward
      biz_var_share    share of groups with non-zero business variance (the only ones with
                       a gradient under ``biz`` and ``a2po``)
      sign_agreement   over entries of semantic groups with A_biz != 0: share with
                       sign A_sem = sign A_biz
      positive_agreement   over entries of semantic groups with A_biz > 0 (under the rank
                       reward: the next item): share with A_sem > 0, i.e. how often the judge
                       puts the item the user chose above its group's semantic mean
      mean_lambda      mean gate value over the same entries (diagnostic in every mode)
      mean_r_biz, mean_r_sem   mean rewards (r_sem over semantic groups)
    """
    spec = advantage_mode(mode)
    r_biz = np.asarray(r_biz, dtype=np.float64)  # (B, G)
    if r_biz.ndim != 2:
        raise ValueError(f"business rewards {r_biz.shape} must be (B, G)")
    n_groups = r_biz.shape[0]
    if r_sem is None:
        r_sem = np.full_like(r_biz, np.nan)
    r_sem = np.asarray(r_sem, dtype=np.float64)  # (B, G)
    if r_sem.shape != r_biz.shape:
        raise ValueError(f"semantic rewards {r_sem.shape} must match business {r_biz.shape}")
    judged = np.ones(n_groups, bool) if judged_mask is None else np.asarray(judged_mask, bool)
    if judged.shape != (n_groups,):
        raise ValueError(f"judged mask {judged.shape} must be ({n_groups},)")
    if not np.isfinite(r_biz).all():
        raise ValueError("business rewards must be finite")

    sem = judged & ~np.isnan(r_sem).any(axis=1)  # (B,): groups that use the semantic reward
    a_biz = standardise(r_biz, eps) if scale_biz else r_biz - r_biz.mean(1, keepdims=True)
    a_sem = np.zeros_like(a_biz)
    a_sem[sem] = standardise(r_sem[sem], eps)
    lam = asymmetric_gate(a_biz, a_sem, eps)  # (B, G); rows outside sem are unused below

    adv = a_biz.copy()
    if spec.semantic is not None and sem.any():
        adv[sem] = spec.semantic(a_biz[sem], a_sem[sem], r_biz[sem], r_sem[sem], lam[sem], eps)

    active = sem[:, None] & (a_biz != 0)  # (B, G): where the gate can act at all
    n_active = int(active.sum())
    agree = np.sign(a_biz) == np.sign(a_sem)
    positive = sem[:, None] & (a_biz > 0)  # (B, G)
    stats: dict[str, Any] = {
        "semantic_share": float(sem.mean()) if n_groups else None,
        "biz_var_share": float((r_biz.max(1) > r_biz.min(1)).mean()) if n_groups else None,
        "sign_agreement": float(agree[active].mean()) if n_active else None,
        "positive_agreement": float((a_sem[positive] > 0).mean()) if positive.any() else None,
        "mean_lambda": float(lam[active].mean()) if n_active else None,
        "mean_r_biz": float(r_biz.mean()) if r_biz.size else None,
        "mean_r_sem": float(r_sem[sem].mean()) if sem.any() else None,
    }
    return adv, stats


def judge_mask(n_groups: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Which groups (B,) the judge is consulted for: each independently with probability rho.

    Per-group draws rather than round(rho * B), so a small batch still sees the judge at rate
    rho on average (round(0.05 * 8) would be 0 every step).
    """
    if not 0.0 <= rho <= 1.0:
        raise ConfigError(f"judge fraction rho {rho!r} must lie in [0, 1]")
    return rng.random(n_groups) < rho  # random() is in [0, 1): rho = 0 -> none, 1 -> all


# ---- loss pieces --------------------------------------------------------------------------------


def _valid_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def sibling_advantages(r: np.ndarray, codes: np.ndarray, valid: np.ndarray | None = None,
                       eps: float = EPS) -> np.ndarray:
    """Per-token advantages (B, G, L) from the SID tree of each group (V-STAR's sibling
    comparison, arXiv 2602.10699).

    The token of rollout g at level l is compared with its siblings: the group's valid
    rollouts with the same first l codes (its parent node), A = (r_g - mean) / (std + eps)
    over them (population std; 0 for a constant set, e.g. a rollout without a sibling). Level 0
    compares the whole group, which is the sequence-level GRPO advantage; deeper levels credit
    the code that made the difference among items sharing a prefix. ``codes`` (B, G, L) are
    the rollouts' SIDs; ``valid`` (B, G) False for padding rollouts (advantage 0, no sibling).
    """
    r = np.asarray(r, dtype=np.float64)
    codes = np.asarray(codes)
    B, G, L = codes.shape
    if r.shape != (B, G):
        raise ValueError(f"rewards {r.shape} must be ({B}, {G}) like the codes")
    valid = np.ones((B, G), bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros((B, G, L))
    for b in range(B):
        for level in range(L):
            parents: dict[tuple, list[int]] = {}
            for g in np.flatnonzero(valid[b]):
                parents.setdefault(tuple(codes[b, g, :level].tolist()), []).append(int(g))
            for members in parents.values():
                out[b, members, level] = standardise(r[b, members][None], eps)[0]
    return out


def positive_part(adv: np.ndarray) -> np.ndarray:
    """DRPO's hard filter (arXiv 2602.10430): a negative advantage becomes 0, so a rollout is
    pushed up when it beats its group and left alone otherwise."""
    return np.maximum(np.asarray(adv, dtype=np.float64), 0.0)


def clipped_surrogate(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate, averaged over valid tokens; and the clip fraction.

    logp_new, logp_old, mask: (N, T) with N = B*G rollouts; adv: (N,) one advantage per rollout,
    or (N, T) one per token (sibling advantages).
    The clip fraction (detached) is the share of valid tokens where the clipped branch is the
    minimum, i.e. where clipping zeroes the gradient: ratio > 1+eps with A > 0, or
    ratio < 1-eps with A < 0.
    """
    if logp_new.shape != logp_old.shape or logp_new.shape != mask.shape or logp_new.ndim != 2:
        raise ValueError(f"log-probs {tuple(logp_new.shape)}, {tuple(logp_old.shape)} and mask "
                         f"{tuple(mask.shape)} must all be (N, T)")
    if adv.shape not in ((logp_new.shape[0],), tuple(logp_new.shape)):
        raise ValueError(f"advantages {tuple(adv.shape)} must be ({logp_new.shape[0]},) or "
                         f"{tuple(logp_new.shape)} (one per token)")
    import torch

    a = adv.to(logp_new.dtype)
    a = a[:, None] if a.ndim == 1 else a  # (N, 1) broadcast over tokens, or (N, T)
    ratio = torch.exp(logp_new - logp_old.detach())  # (N, T)
    unclipped = ratio * a
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a
    loss = -_valid_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        is_clipped = ((ratio > 1.0 + clip_eps) & (a > 0)) | ((ratio < 1.0 - clip_eps) & (a < 0))
        clip_fraction = _valid_mean(is_clipped.to(logp_new.dtype), mask)
    return loss, clip_fraction


def k3_kl(logp_new: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(pi_new || pi_ref) (always >= 0), averaged over valid tokens (N, T)."""
    if logp_new.shape != logp_ref.shape or logp_new.shape != mask.shape:
        raise ValueError(f"log-probs {tuple(logp_new.shape)}, {tuple(logp_ref.shape)} and mask "
                         f"{tuple(mask.shape)} must have one shape")
    import torch

    d = logp_ref.detach() - logp_new  # (N, T)
    return _valid_mean(torch.exp(d) - d - 1.0, mask)
