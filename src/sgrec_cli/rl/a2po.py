"""The A2PO loop (DESIGN §7): constrained-beam rollouts from the current policy, business and
semantic rewards, group advantages (``advantages.combine``), clipped surrogate + beta * KL(k3) to
the frozen SFT reference.

One step: B training examples (history, next item) are drawn; the policy's top-G distinct items
per example by constrained beam search (or G distinct items sampled without replacement by
stochastic beam search) form the groups; rewards (B, G) -> advantages (B, G); ``ppo_epochs``
gradient steps on the SID tokens of the B*G rollouts, with log-probabilities of the rollout
policy frozen as pi_old (so the first epoch has ratio 1).

Under torchrun each process takes B / world of the groups; the loss of a process is scaled by
its share of the step's rollouts, so DDP's gradient average equals the single-process gradient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..config import DEVICES, require
from ..generator.beam import _level_log_probs, constrained_beam_search
from ..generator.tokens import SidVocab
from ..generator.trie import SidTrie
from .advantages import (
    MODES,
    combine,
    credit_rewards,
    distance_credit,
    prefix_rewards,
    rank_penalty_rewards,
    target_rank,
    value_rewards,
)
from .advantages import clipped_surrogate as surrogate
from .advantages import k3_kl as kl_k3

BUSINESS_REWARDS = ("rank", "prefix", "value", "future")
ROLLOUTS = ("beam", "sample")


@dataclass
class A2POConfig:
    """`sgrec train --a2po`: RUN/sft + RUN/judge -> RUN/a2po.

    advantage     a2po (default), biz (GRPO on the business reward: MiniOneRec's recipe),
                  reward-sum, adv-sum: the paper's ablations, one code path
    group_size    G distinct items per group (beam top-G or a sample, see rollout)
    business      rank (1 for the next item, rank-aware penalty for the others when it is in the
                  group), prefix (partial credit per matching SID level: denser), value (the
                  rank penalty weighted by the items' value field, e.g. price) or future (the
                  rank penalty that credits, instead of penalising, the items the user takes
                  later in the training sequence)
    rollout       beam (the top-G by constrained beam search) or sample (G distinct items drawn
                  without replacement at ``temperature``, stochastic beam search)
    rho           share of groups whose semantic reward is consulted (paper: 0.05)
    beta, clip    KL(k3) weight to the SFT reference; PPO clip epsilon
    steps         optimisation steps of ``batch_users`` groups each
    """

    advantage: str = "a2po"
    group_size: int = 16
    business: str = "rank"
    rollout: str = "beam"
    temperature: float = 1.0
    rho: float = 0.05
    beta: float = 1e-3
    clip: float = 0.2
    lr: float = 1e-5
    batch_users: int = 32
    ppo_epochs: int = 1
    steps: int = 300
    eval_every: int = 50
    valid_users: int = 1000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require(self.advantage in MODES,
               f"--advantage {self.advantage!r} is not known; use one of: {', '.join(MODES)}")
        require(self.business in BUSINESS_REWARDS,
               f"--business {self.business!r} is not known; use one of: "
               f"{', '.join(BUSINESS_REWARDS)}")
        require(self.rollout in ROLLOUTS,
               f"--rollout {self.rollout!r} is not known; use one of: {', '.join(ROLLOUTS)}")
        require(isinstance(self.temperature, (int, float)) and self.temperature > 0,
               f"--temperature {self.temperature!r} must be > 0")
        require(self.device in DEVICES,
               f"--device {self.device!r} is not known; use one of: {', '.join(DEVICES)}")
        for name in ("group_size", "batch_users", "ppo_epochs", "steps", "eval_every"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                   f"--{name.replace('_', '-')} {value!r} must be an integer >= 1")
        require(self.group_size >= 2, f"--group-size {self.group_size} must be >= 2: "
                                      "advantages compare the items of a group")
        require(isinstance(self.valid_users, int) and self.valid_users >= 0,
               f"--valid-users {self.valid_users!r} must be an integer >= 0 (0 = all)")
        require(0 <= self.rho <= 1, f"--rho {self.rho!r} must lie in [0, 1] (paper: 0.05)")
        require(self.beta >= 0, f"--beta {self.beta!r} must be >= 0")
        require(0 < self.clip < 1, f"--clip {self.clip!r} must lie in (0, 1)")
        require(self.lr > 0, f"--lr {self.lr!r} must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequence_log_probs(model, hidden: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                       vocab: SidVocab) -> torch.Tensor:
    """Per-token log-probabilities (N, L) of the SID tokens ``labels`` (N, L) given encoder
    states ``hidden`` (N, S, D), with each level's distribution as decoding sees it."""
    out = model(encoder_outputs=(hidden,), attention_mask=mask, labels=labels)
    cols = []
    for level in range(vocab.num_levels):
        lp = _level_log_probs(out.logits[:, level], vocab, level)  # (N, K_l)
        start, _ = vocab.level_range(level)
        cols.append(lp.gather(1, (labels[:, level] - start)[:, None]))
    return torch.cat(cols, dim=1)  # (N, L)


class PolicyScorer(torch.nn.Module):
    """log pi(SID tokens | history) of rollouts, the encoder run once per user: one module, so
    that under torchrun ``DistributedDataParallel`` wraps the very forward that is trained."""

    def __init__(self, model, vocab: SidVocab):
        super().__init__()
        self.model = model
        self.vocab = vocab

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, user_of: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask)[0]  # (B, S, D)
        return sequence_log_probs(self.model, hidden[user_of], mask[user_of], labels,
                                  self.vocab)  # (N, L)


def rollout_groups(model, ids: torch.Tensor, mask: torch.Tensor, trie: SidTrie, vocab: SidVocab,
                   cfg: A2POConfig, gen: torch.Generator | None = None) -> np.ndarray:
    """(B, G) distinct items per history, ordered by the policy's log-probability (-1 when
    unreachable): the beam top-G, or with ``cfg.rollout == "sample"`` a sample without
    replacement drawn with ``gen``."""
    sample = gen if cfg.rollout == "sample" else None
    items, _ = constrained_beam_search(model, ids, mask, trie, vocab, cfg.group_size,
                                       sample=sample, temperature=cfg.temperature)
    return items.cpu().numpy()


def later_training_items(train: Sequence, sequences: Sequence[Sequence[int]],
                         held_out: int = 2) -> list[dict[int, int]]:
    """For each training example (in ``split_all``'s order: per user, t = 1, 2, ...), the items
    the user takes after its target within the training part of the sequence (the last
    ``held_out`` items are validation and test, never read), as {item: distance >= 1}."""
    out: list[dict[int, int]] = []
    t, last_user = 0, None
    for ex in train:
        t = t + 1 if ex.user == last_user else 1
        last_user = ex.user
        seq = sequences[ex.user]
        if seq[t] != ex.target:
            raise ValueError(f"training example of user {ex.user} is out of order")
        later: dict[int, int] = {}
        for d, item in enumerate(seq[t + 1:len(seq) - held_out], start=1):
            later.setdefault(int(item), d)
        later.pop(int(ex.target), None)  # a repeat of the target is the target
        out.append(later)
    return out


def business_rewards(kind: str, items: np.ndarray, targets: np.ndarray, codes: np.ndarray,
                     values: np.ndarray | None = None,
                     later: Sequence[dict[int, int]] | None = None) -> np.ndarray:
    """r_biz (B, G) of ``kind`` in BUSINESS_REWARDS for groups ``items`` (B, G) (-1 = none);
    ``later`` (kind future): per group, the user's later training items and their distance."""
    safe = np.where(items >= 0, items, 0)
    if kind == "prefix":
        return prefix_rewards(codes[safe], codes[targets])
    if kind == "future":
        if later is None:
            raise ValueError("the future reward needs the users' later items")
        dist = np.full(items.shape, np.nan)  # (B, G)
        dist[items == targets[:, None]] = 0.0
        for b, row in enumerate(items):
            for g, item in enumerate(row):
                if int(item) in later[b]:
                    dist[b, g] = later[b][int(item)]
        return credit_rewards(distance_credit(dist))
    rank = target_rank(items, targets)
    if kind == "value":
        if values is None:
            raise ValueError("the value reward needs item values")
        return value_rewards(rank, values[safe])
    return rank_penalty_rewards(rank, items.shape[1])


SemanticFn = Callable[[Sequence[int], Sequence[int], np.ndarray], np.ndarray]


def _all_sum(x: int, world) -> int:
    if world is None or not world.distributed:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=world.device)
    torch.distributed.all_reduce(t)
    return int(t.item())


def a2po_step(model, scorer, ref, opt, cfg: A2POConfig, vocab: SidVocab, trie: SidTrie,
              codes: np.ndarray, batch: Sequence[tuple[int, list[int], int]],
              judged: np.ndarray, semantic: SemanticFn | None, max_history: int,
              values: np.ndarray | None = None, gen: torch.Generator | None = None,
              world=None, later: Sequence[dict[int, int]] | None = None) -> dict[str, float]:
    """One A2PO step on ``batch`` = [(user index, history, next item)]; ``judged`` (B,) marks
    the groups given a semantic reward; ``scorer`` is ``PolicyScorer(model)`` (DDP-wrapped under
    torchrun, ``world`` then holds the process group). Returns this process's step log."""
    device = next(model.parameters()).device
    size = world.size if world is not None else 1
    t0 = time.perf_counter()
    ids, mask = vocab.encode_history([h for _, h, _ in batch], codes, max_history)
    ids, mask = ids.to(device), mask.to(device)
    items = rollout_groups(model, ids, mask, trie, vocab, cfg, gen)  # (B, G)
    t1 = time.perf_counter()

    targets = np.asarray([t for _, _, t in batch], dtype=np.int64)
    valid = items >= 0
    safe = np.where(valid, items, 0)
    r_biz = np.where(valid, business_rewards(cfg.business, items, targets, codes, values, later),
                     0.0)
    r_sem = None
    if semantic is not None and cfg.advantage != "biz" and judged.any():
        r_sem = np.full(items.shape, np.nan)
        for b in np.flatnonzero(judged):
            r_sem[b] = semantic(batch[b][0], batch[b][1], safe[b])
    adv, stats = combine(r_biz, r_sem, cfg.advantage, judged)
    adv = np.where(valid, adv, 0.0)
    t2 = time.perf_counter()

    log = {"hit_fraction": float((target_rank(items, targets) >= 0).mean()), **stats}
    log.update(loss=None, kl=None, clip_fraction=None)  # None: no update from this process
    rows = np.flatnonzero(np.abs(adv).reshape(-1) > 0)  # rollouts that carry a gradient
    n_mine = int(rows.size)
    n_all = _all_sum(n_mine, world)  # over every process: all update, or none does
    if n_all:
        # a process without a gradient-carrying rollout still runs the update (DDP needs every
        # process in the backward pass) on one rollout whose loss it scales by zero
        weight = n_mine * size / n_all
        rows = rows if n_mine else np.zeros(1, dtype=np.int64)
        g = cfg.group_size
        labels = vocab.target_tokens(safe.reshape(-1)[rows], codes).to(device)  # (N, L)
        user_of = torch.as_tensor(rows // g, device=device)
        a = torch.as_tensor(adv.reshape(-1)[rows], dtype=torch.float32, device=device)
        tok_mask = torch.ones(labels.shape, device=device)
        with torch.no_grad():
            h_ref = ref.get_encoder()(input_ids=ids, attention_mask=mask)[0]
            lp_ref = sequence_log_probs(ref, h_ref[user_of], mask[user_of], labels, vocab)
        for epoch in range(cfg.ppo_epochs):
            lp = scorer(ids, mask, user_of, labels)  # (N, L)
            if epoch == 0:
                # eval mode (no dropout) and no update yet: this is pi_old, so the first
                # epoch's ratio is exactly 1, as GRPO intends
                lp_old = lp.detach()
            pg, clip_frac = surrogate(lp, lp_old, a, tok_mask, cfg.clip)
            kl = kl_k3(lp, lp_ref, tok_mask)
            loss = pg + cfg.beta * kl
            opt.zero_grad(set_to_none=True)
            (weight * loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if n_mine:
            log.update(loss=float(loss.detach()), kl=float(kl.detach()),
                       clip_fraction=float(clip_frac))
    t3 = time.perf_counter()
    log.update(rollouts_with_gradient=n_mine,
               rollout_s=t1 - t0, reward_s=t2 - t1, update_s=t3 - t2)
    return log
