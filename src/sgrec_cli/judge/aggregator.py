"""Stage B of the Personalized Semantic Judge: a user-conditional aggregator of aspect scores.

Stage A scores a candidate item ``a`` for a user context ``x`` on ``A`` aspects,
``s(x, a) in [0, 1]^A`` (NaN = missing). Stage B turns user features ``f(x)`` into simplex
weights and scores the candidate holistically::

    z(x)         = (f(x) - mu) / sigma                    standardised features (mu, sigma: fit)
    w(x)         = softmax(W z(x) + b)                    W: (A, F), b: (A,); w >= 0, sum w = 1
    s_hol(x, a)  = w(x)^T s(x, a)                         NaN if any aspect of s(x, a) is NaN

With ``personalised=False`` the input is zero-width, so ``w = softmax(b)``: one learned global
weighting. The model is fit from pairs ``(x, a+, a-)``: a+ is the item the user chose next,
a- a candidate that was not chosen; ``d = s_hol(x, a+) - s_hol(x, a-)``.

* ``bt`` (Bradley-Terry, default)::

      L = mean softplus(-t d) + lambda ||W||^2  = -mean log sigmoid(t d) + lambda ||W||^2

* ``group-rl`` (the paper's objective): ``w(x)`` is the mean of a Dirichlet policy
  ``pi(. | x) = Dirichlet(c w(x) + 1e-3)``. For each pair, draw G weight vectors ``w_g``,
  reward ``r_g = 1[w_g^T (s+ - s-) > 0]``, group advantage
  ``A_g = (r_g - mean_g r) / (std_g r + 1e-6)`` (population std; 0 when all rewards agree)::

      L = -mean_{pairs, g} A_g log pi(w_g | x) + lambda ||W||^2

The deterministic output is always ``w(x)``. Evaluation is the pairwise AUC: the share of pairs
with ``s_hol(a+) > s_hol(a-)``, ties counting 1/2, also per user for a paired user bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..maths import standardise
from ..validate import check_ints, check_num, require
from . import OBJECTIVES

LOG_EVERY = 50  # training-log interval in steps
_STD_FLOOR = 1e-8  # features with a smaller spread are constant: divide by 1, not by ~0
_SAMPLE_FLOOR = 1e-12  # Dirichlet samples can underflow to 0, where log pi = -inf


# ---- scoring and evaluation ---------------------------------------------------------------------


def holistic(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise ``w_i^T s_i`` (n,), NaN where any aspect score of the row is NaN."""
    w = np.asarray(weights, dtype=np.float64)  # (n, A)
    s = np.asarray(scores, dtype=np.float64)  # (n, A)
    if w.ndim != 2 or w.shape != s.shape:
        raise ValueError(f"weights {w.shape} and scores {s.shape} must both be (n, A)")
    out = np.einsum("na,na->n", w, s)  # (n,)
    # explicit, so a NaN under a zero weight still marks the row as missing
    out[np.isnan(s).any(axis=1)] = np.nan
    return out


def pair_wins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per pair: 1.0 if pos > neg, 0.5 if equal, 0.0 otherwise (m,). NaN rows: drop them first."""
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    if p.shape != n.shape or p.ndim != 1:
        raise ValueError(f"pos {p.shape} and neg {n.shape} must both be (m,)")
    return np.where(p > n, 1.0, np.where(p == n, 0.5, 0.0))


def pairwise_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Pairwise AUC (accuracy with ties = 1/2): the mean of :func:`pair_wins`."""
    wins = pair_wins(pos, neg)
    if wins.size == 0:
        raise ValueError("pairwise AUC of zero pairs is undefined; pass at least one pair")
    return float(wins.mean())


def user_auc(pair_users: np.ndarray, wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean win per user: (users (U',) sorted, auc (U',)), the unit of a paired user bootstrap."""
    u = np.asarray(pair_users)
    w = np.asarray(wins, dtype=np.float64)
    if u.shape != w.shape or u.ndim != 1:
        raise ValueError(f"pair_users {u.shape} and wins {w.shape} must both be (m,)")
    users, inv = np.unique(u, return_inverse=True)  # users: (U',), inv: (m,)
    sums = np.bincount(inv, weights=w, minlength=len(users))
    counts = np.bincount(inv, minlength=len(users))
    return users, sums / counts


# ---- user features ------------------------------------------------------------------------------


def _diversity(e: np.ndarray) -> float:
    """1 - mean cosine over the n(n-1)/2 pairs of unit rows e (n, D); 0 for a single item.

    sum_{i != j} e_i.e_j = ||sum_i e_i||^2 - n, so this is O(nD) rather than O(n^2 D).
    """
    n = e.shape[0]
    if n < 2:
        return 0.0
    total = e.sum(axis=0)  # (D,)
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    return 1.0 - mean_cos


def user_features(histories: list[list[int]], emb: np.ndarray) -> np.ndarray:
    """Features (U, D + 2) float32: [mean history embedding, log1p(len), diversity].

    ``emb`` (N, D) should be unit-norm; rows are re-normalised anyway, so the diversity is
    1 - mean pairwise cosine whatever the caller passes. A repeated item counts as a pair with
    cosine 1.
    """
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"item embeddings must be (N, D), got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)  # (N, 1)
    unit = e / np.where(norms > 0, norms, 1.0)  # (N, D); a zero row stays zero
    n_items, dim = e.shape
    out = np.zeros((len(histories), dim + 2), dtype=np.float64)  # (U, D + 2)
    for u, hist in enumerate(histories):
        idx = np.asarray(hist, dtype=np.int64)
        if idx.size == 0:
            raise ValueError(f"user {u} has an empty history; user features need >= 1 item")
        if idx.min() < 0 or idx.max() >= n_items:
            raise ValueError(f"user {u}: item index out of range [0, {n_items}) in {list(hist)}")
        out[u, :dim] = e[idx].mean(axis=0)
        out[u, dim] = math.log1p(idx.size)
        out[u, dim + 1] = _diversity(unit[idx])
    return out.astype(np.float32)


# ---- configuration ------------------------------------------------------------------------------


@dataclass
class AggregatorConfig:
    """Stage B fit options.

    objective      bt (Bradley-Terry on the holistic score difference) or group-rl (the paper's
                   Dirichlet policy with group-relative advantages)
    personalised   False = one global weight vector (features ignored, only the bias is learnt)
    steps, lr      full-batch Adam steps and learning rate
    weight_decay   lambda on ||W||^2 (the bias is not decayed)
    temperature    BT scale t on the score difference
    group_size     group-RL samples G per pair (>= 2: advantages need a group)
    concentration  group-RL Dirichlet concentration c: alpha = c w(x) + 1e-3
    rl_batch       group-RL pairs drawn per step (all pairs when fewer): sampling G Dirichlet
                   draws for every pair at every step would dominate the judge's run time
    seed           torch seed for sampling (the fit is otherwise deterministic)
    """

    objective: str = "bt"
    personalised: bool = True
    steps: int = 300
    lr: float = 0.05
    weight_decay: float = 1e-3
    temperature: float = 10.0
    group_size: int = 8
    concentration: float = 20.0
    rl_batch: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def label(name: str) -> str:
            return f"aggregator {name}"

        require(self.objective in OBJECTIVES,
                f"aggregator objective {self.objective!r} is not known; use one of: "
                f"{', '.join(OBJECTIVES)}")
        require(isinstance(self.personalised, (bool, np.bool_)),
                f"aggregator personalised {self.personalised!r} must be true or false")
        check_ints(self, ("steps", "rl_batch"), 1, label)
        check_ints(self, ("group_size",), 2, label)  # advantages compare samples of a group
        check_ints(self, ("seed",), 0, label)
        for name in ("lr", "temperature", "concentration"):
            check_num(name, getattr(self, name), low=0, low_open=True, label=label)
        check_num("weight_decay", self.weight_decay, low=0, hint=" (0 disables it)",
                  label=label)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- losses -------------------------------------------------------------------------------------


def bt_loss(diff: torch.Tensor, temperature: float) -> torch.Tensor:
    """Bradley-Terry loss mean softplus(-t d) = -mean log sigmoid(t d); d = s_hol(+) - s_hol(-)."""
    # softplus is the numerically stable form of -log sigmoid
    return F.softplus(-temperature * diff).mean()


# ---- the model ----------------------------------------------------------------------------------


def _softmax_weights(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """w = softmax(z W^T + b): z (U, F), weight (A, F), bias (A,) -> (U, A)."""
    return torch.softmax(z @ weight.T + bias, dim=1)


class Aggregator:
    """Linear map from standardised user features to A logits; ``w = softmax(logits)``.

    A non-personalised aggregator has zero input features (``weight`` is (A, 0)), so every user
    gets ``softmax(bias)``. The state is float32 throughout, so a model reloaded from
    :meth:`state_dict` gives bit-identical weights.
    """

    def __init__(self, aspects: list[str], feature_mean: np.ndarray, feature_std: np.ndarray,
                 weight: np.ndarray, bias: np.ndarray, cfg: AggregatorConfig | None = None):
        self.aspects = list(aspects)
        self.feature_mean = np.asarray(feature_mean, dtype=np.float32).reshape(-1)  # (F,)
        self.feature_std = np.asarray(feature_std, dtype=np.float32).reshape(-1)  # (F,)
        self.weight = np.asarray(weight, dtype=np.float32)  # (A, F)
        self.bias = np.asarray(bias, dtype=np.float32).reshape(-1)  # (A,)
        self.cfg = cfg
        n_aspects, n_features = self.weight.shape if self.weight.ndim == 2 else (-1, -1)
        if (n_aspects != len(self.aspects) or self.bias.shape != (n_aspects,)
                or self.feature_mean.shape != (n_features,)
                or self.feature_std.shape != (n_features,)):
            raise ValueError(
                f"inconsistent aggregator state: {len(self.aspects)} aspects, weight "
                f"{self.weight.shape}, bias {self.bias.shape}, feature mean "
                f"{self.feature_mean.shape}, feature std {self.feature_std.shape}")

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def personalised(self) -> bool:
        return self.n_features > 0

    def weights(self, features: np.ndarray) -> np.ndarray:
        """Simplex weights (U, A) float32 for user features (U, F)."""
        f = np.asarray(features, dtype=np.float32)
        if f.ndim != 2:
            raise ValueError(f"user features must be (U, F), got shape {f.shape}")
        if self.personalised and f.shape[1] != self.n_features:
            raise ValueError(f"user features have {f.shape[1]} columns; this aggregator was "
                             f"fit on {self.n_features}")
        # a global model reads only the number of rows
        z = (f[:, : self.n_features] - self.feature_mean) / self.feature_std  # (U, F)
        with torch.no_grad():
            w = _softmax_weights(torch.from_numpy(np.ascontiguousarray(z)),
                                 torch.from_numpy(self.weight), torch.from_numpy(self.bias))
        return w.numpy().astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Contiguous float32 tensors, ready for ``safetensors.torch.save_file``."""
        return {
            "feature_mean": torch.from_numpy(self.feature_mean.copy()),
            "feature_std": torch.from_numpy(self.feature_std.copy()),
            "weight": torch.from_numpy(self.weight.copy()),
            "bias": torch.from_numpy(self.bias.copy()),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], aspects: list[str],
                        cfg: AggregatorConfig | None = None) -> Aggregator:
        missing = [k for k in ("feature_mean", "feature_std", "weight", "bias") if k not in state]
        if missing:
            raise ValueError(f"aggregator state lacks {', '.join(missing)}")
        arrays = {k: state[k].detach().cpu().to(torch.float32).numpy() for k in
                  ("feature_mean", "feature_std", "weight", "bias")}
        return cls(aspects, cfg=cfg, **arrays)

    def to_json(self) -> dict[str, Any]:
        return {
            "aspects": list(self.aspects),
            "n_features": self.n_features,
            "personalised": self.personalised,
            "config": self.cfg.to_dict() if self.cfg is not None else None,
        }


# ---- fitting ------------------------------------------------------------------------------------


def _usable_pairs(features: np.ndarray, aspects: list[str], pair_users: np.ndarray,
                  pos_scores: np.ndarray, neg_scores: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and drop pairs with any NaN score: (feats, users, pos, neg)."""
    f = np.asarray(features, dtype=np.float64)
    u = np.asarray(pair_users)
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    n_aspects = len(aspects)
    if n_aspects < 1 or len(set(aspects)) != n_aspects:
        raise ValueError(f"aspects must be a non-empty list of distinct names, got {aspects}")
    if f.ndim != 2:
        raise ValueError(f"user features must be (U, F), got shape {f.shape}")
    if u.ndim != 1 or not np.issubdtype(u.dtype, np.integer):
        raise ValueError(f"pair_users must be a 1-D integer array, got {u.dtype} {u.shape}")
    m = u.shape[0]
    for name, s in (("pos_scores", pos), ("neg_scores", neg)):
        if s.shape != (m, n_aspects):
            raise ValueError(f"{name} has shape {s.shape}; expected ({m}, {n_aspects}): "
                             "one row per pair, one column per aspect")
    if m and (u.min() < 0 or u.max() >= f.shape[0]):
        raise ValueError(f"pair_users index rows of features: must lie in [0, {f.shape[0]})")
    keep = ~(np.isnan(pos).any(axis=1) | np.isnan(neg).any(axis=1))  # (m,)
    if not keep.any():
        raise ValueError(f"no usable pairs to fit the aggregator: {m} pairs given, all with a "
                         "missing (NaN) aspect score; score more pairs or fewer aspects")
    u, pos, neg = u[keep], pos[keep], neg[keep]
    if not np.isfinite(f[np.unique(u)]).all():
        raise ValueError("user features of the paired users contain NaN or infinite values")
    return f, u.astype(np.int64), pos, neg


def _standardiser(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std (F,) of training features; a constant column gets std 1."""
    mean = f.mean(axis=0)
    std = f.std(axis=0)
    return mean, np.where(std > _STD_FLOOR, std, 1.0)


def _policy_loss(w: torch.Tensor, d: torch.Tensor, cfg: AggregatorConfig) -> torch.Tensor:
    """Group-RL loss -mean A_g log pi(w_g | x), w (m, A) policy means, d = s+ - s- (m, A)."""
    alpha = cfg.concentration * w + 1e-3  # (m, A)
    policy = torch.distributions.Dirichlet(alpha, validate_args=False)
    with torch.no_grad():
        samples = policy.sample((cfg.group_size,))  # (G, m, A)
        # keep log pi finite where a coordinate underflowed to 0
        samples = samples.clamp_min(_SAMPLE_FLOOR)
        samples = samples / samples.sum(dim=-1, keepdim=True)
        rewards = ((samples * d).sum(dim=-1) > 0).to(w.dtype).T  # (m, G)
        adv = standardise(rewards)  # (m, G)
    log_p = policy.log_prob(samples).T  # (m, G)
    return -(adv * log_p).mean()


def fit_aggregator(features: np.ndarray, aspects: list[str], pair_users: np.ndarray,
                   pos_scores: np.ndarray, neg_scores: np.ndarray,
                   cfg: AggregatorConfig) -> tuple[Aggregator, list[dict]]:
    """Fit Stage B on pairs (user, chosen a+, not chosen a-); rows with a NaN score are dropped.

    features (U, F), pair_users (m,) rows of features, pos_scores / neg_scores (m, A).
    Full-batch Adam in float64 from W = 0, b = 0 (uniform weights), so the fit is deterministic
    given ``cfg.seed`` (which drives only the group-RL samples). Returns the model and a log of
    ``{"step", "loss", "train_acc"}`` every LOG_EVERY steps and at the end; step 0 is the start.
    """
    f, u, pos, neg = _usable_pairs(features, aspects, pair_users, pos_scores, neg_scores)
    n_aspects = len(aspects)
    if not cfg.personalised:
        f = np.zeros((f.shape[0], 0))  # zero-width input: only the bias is learnt
    elif f.shape[1] == 0:
        raise ValueError("a personalised aggregator needs >= 1 user feature column; "
                         "pass features or set personalised=False")
    mean, std = _standardiser(f[np.unique(u)]) if f.shape[1] else (np.zeros(0), np.ones(0))

    z_users = torch.from_numpy((f - mean) / std)  # (U, F)
    u_t = torch.from_numpy(u)  # (m,)
    s_pos = torch.from_numpy(pos)  # (m, A)
    s_neg = torch.from_numpy(neg)  # (m, A)
    d = s_pos - s_neg  # (m, A)

    # zero init = uniform weights; also what makes the fit independent of the seed for BT
    weight = torch.zeros(n_aspects, z_users.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_aspects, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=cfg.lr)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        # weights per user, then per pair: U << m, so the map runs once per user
        w = _softmax_weights(z_users, weight, bias)[u_t]  # (m, A)
        if cfg.objective == "bt":
            data = bt_loss((w * d).sum(dim=1), cfg.temperature)
        elif d.shape[0] > cfg.rl_batch:  # a fresh minibatch of pairs each step
            idx = torch.randint(d.shape[0], (cfg.rl_batch,))
            data = _policy_loss(w[idx], d[idx], cfg)
        else:
            data = _policy_loss(w, d, cfg)
        return data + cfg.weight_decay * weight.pow(2).sum(), w

    log: list[dict] = []

    def record(step: int, loss: torch.Tensor, w: torch.Tensor) -> None:
        diff = (w.detach() * d).sum(dim=1).numpy()  # (m,)
        acc = float(pair_wins(diff, np.zeros_like(diff)).mean())
        log.append({"step": step, "loss": float(loss.detach()), "train_acc": acc})

    # a private RNG stream: seeded sampling without touching the caller's global torch state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for step in range(cfg.steps):
            loss, w = objective()
            if step % LOG_EVERY == 0:
                record(step, loss, w)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            loss, w = objective()
        record(cfg.steps, loss, w)

    model = Aggregator(aspects, mean, std, weight.detach().numpy(), bias.detach().numpy(), cfg)
    return model, log
