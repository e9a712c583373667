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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import A2POConfig
from ..generator.beam import constrained_beam_search, level_log_probs
from ..generator.tokens import SidVocab
from ..generator.trie import SidTrie
from .advantages import (
    ADVANTAGES,
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

__all__ = ["A2POConfig", "Policy", "a2po_step", "business_rewards", "later_training_items",
           "rollout_groups", "sequence_log_probs"]


def sequence_log_probs(model, hidden: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                       vocab: SidVocab) -> torch.Tensor:
    """Per-token log-probabilities (N, L) of the SID tokens ``labels`` (N, L) given encoder
    states ``hidden`` (N, S, D), with each level's distribution as decoding sees it."""
    out = model(encoder_outputs=(hidden,), attention_mask=mask, labels=labels)
    cols = []
    for level in range(vocab.num_levels):
        lp = level_log_probs(out.logits[:, level], vocab, level)  # (N, K_l)
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
        hidden = self.model.encode(ids, mask)  # (B, S, D)
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


@dataclass
class Policy:
    """What an A2PO step updates and decodes with."""

    model: Any  # the policy (T5ForConditionalGeneration)
    scorer: Any  # PolicyScorer(model), DDP-wrapped under torchrun
    ref: Any  # the frozen SFT reference (KL)
    optimizer: torch.optim.Optimizer
    vocab: SidVocab
    trie: SidTrie
    codes: np.ndarray  # (N, L) item SIDs
    max_history: int
    world: Any = None  # distributed.World under torchrun


def _rollout(p: Policy, cfg: A2POConfig, batch, gen) -> tuple:
    device = next(p.model.parameters()).device
    ids, mask = p.vocab.encode_history([h for _, h, _ in batch], p.codes, p.max_history,
                                       per_item=p.model.per_item)
    ids, mask = ids.to(device), mask.to(device)
    return ids, mask, rollout_groups(p.model, ids, mask, p.trie, p.vocab, cfg, gen)


def _advantages(items: np.ndarray, batch, cfg: A2POConfig, codes: np.ndarray, *, judged,
                semantic, values, later) -> tuple[np.ndarray, dict]:
    """Advantages (B, G) of the groups and the reward statistics to log."""
    targets = np.asarray([t for _, _, t in batch], dtype=np.int64)
    valid = items >= 0
    safe = np.where(valid, items, 0)
    r_biz = np.where(valid, business_rewards(cfg.business, items, targets, codes, values, later),
                     0.0)
    r_sem = None
    if semantic is not None and ADVANTAGES[cfg.advantage].uses_judge and judged.any():
        r_sem = np.full(items.shape, np.nan)
        for b in np.flatnonzero(judged):
            r_sem[b] = semantic(batch[b][0], batch[b][1], safe[b])
    adv, stats = combine(r_biz, r_sem, cfg.advantage, judged)
    stats = {"hit_fraction": float((target_rank(items, targets) >= 0).mean()), **stats}
    return np.where(valid, adv, 0.0), stats


def _update(p: Policy, cfg: A2POConfig, ids, mask, items: np.ndarray, adv: np.ndarray) -> dict:
    """``ppo_epochs`` clipped-surrogate + KL updates on the gradient-carrying rollouts."""
    device = next(p.model.parameters()).device
    size = p.world.size if p.world is not None else 1
    log: dict[str, Any] = {"loss": None, "kl": None, "clip_fraction": None}
    rows = np.flatnonzero(np.abs(adv).reshape(-1) > 0)  # rollouts that carry a gradient
    n_mine = int(rows.size)
    n_all = _all_sum(n_mine, p.world)  # over every process: all update, or none does
    log["rollouts_with_gradient"] = n_mine
    if not n_all:
        return log
    # a process without a gradient-carrying rollout still runs the update (DDP needs every
    # process in the backward pass) on one rollout whose loss it scales by zero
    weight = n_mine * size / n_all
    rows = rows if n_mine else np.zeros(1, dtype=np.int64)
    safe = np.where(items >= 0, items, 0)
    labels = p.vocab.target_tokens(safe.reshape(-1)[rows], p.codes).to(device)  # (N, L)
    user_of = torch.as_tensor(rows // cfg.group_size, device=device)
    a = torch.as_tensor(adv.reshape(-1)[rows], dtype=torch.float32, device=device)
    tok_mask = torch.ones(labels.shape, device=device)
    with torch.no_grad():
        h_ref = p.ref.encode(ids, mask)
        lp_ref = sequence_log_probs(p.ref, h_ref[user_of], mask[user_of], labels, p.vocab)
    for epoch in range(cfg.ppo_epochs):
        lp = p.scorer(ids, mask, user_of, labels)  # (N, L)
        if epoch == 0:
            # eval mode (no dropout) and no update yet: this is pi_old, so the first
            # epoch's ratio is exactly 1, as GRPO intends
            lp_old = lp.detach()
        pg, clip_frac = surrogate(lp, lp_old, a, tok_mask, cfg.clip)
        kl = kl_k3(lp, lp_ref, tok_mask)
        loss = pg + cfg.beta * kl
        p.optimizer.zero_grad(set_to_none=True)
        (weight * loss).backward()
        torch.nn.utils.clip_grad_norm_(p.model.parameters(), 1.0)
        p.optimizer.step()
    if n_mine:
        log.update(loss=float(loss.detach()), kl=float(kl.detach()),
                   clip_fraction=float(clip_frac))
    return log


def a2po_step(p: Policy, batch: Sequence[tuple[int, list[int], int]], *, cfg: A2POConfig,
              judged: np.ndarray, semantic: SemanticFn | None = None,
              values: np.ndarray | None = None, gen: torch.Generator | None = None,
              later: Sequence[dict[int, int]] | None = None) -> dict[str, float]:
    """One A2PO step on ``batch`` = [(user index, history, next item)]: rollouts, rewards,
    advantages, update. ``judged`` (B,) marks the groups given a semantic reward; ``values``
    (business value), ``gen`` (sampled rollouts) and ``later`` (business future) as the config
    asks. Returns this process's step log."""
    t0 = time.perf_counter()
    ids, mask, items = _rollout(p, cfg, batch, gen)  # items (B, G)
    t1 = time.perf_counter()
    adv, log = _advantages(items, batch, cfg, p.codes, judged=judged, semantic=semantic,
                           values=values, later=later)
    t2 = time.perf_counter()
    log.update(_update(p, cfg, ids, mask, items, adv))
    log.update(rollout_s=t1 - t0, reward_s=t2 - t1, update_s=time.perf_counter() - t2)
    return log
