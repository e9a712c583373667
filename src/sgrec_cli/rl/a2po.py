"""The A2PO loop (docs/design.md §7): constrained-beam rollouts from the current policy, business
and semantic rewards, group advantages (``advantages.combine``), clipped surrogate + beta *
KL(k3) to the frozen SFT reference.

One step: B training examples (history, next item) are drawn; the policy's top-G distinct items
per example by constrained beam search (or G distinct items sampled without replacement by
stochastic beam search) form the groups; rewards (B, G) -> advantages (B, G); ``ppo_epochs``
gradient steps on the SID tokens of the B*G rollouts, with log-probabilities of the rollout
policy frozen as pi_old (so the first epoch has ratio 1). Options: sibling advantages (B, G, L)
per SID token, the positive-only filter, and an NLL anchor (``nll_weight`` x the mean
cross-entropy of the B targets' SID tokens) added to the loss.

Rollouts and the update run ``chunk_users`` groups at a time, gradients accumulated over the
chunks before the one optimiser step: a chunk's surrogate and KL are weighted by its share of the
step's gradient-carrying rollouts and its NLL by its share of the groups, so the step equals the
unchunked one (up to float rounding). Under torchrun each process takes B / world of the groups
and the same weights run over all processes, so DDP's gradient average equals the
single-process gradient.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..generator.beam import constrained_beam_search, level_log_probs
from ..generator.tokens import SidVocab
from ..generator.trie import SidTrie
from .advantages import (
    ADVANTAGES,
    UNSCALED_SHAPES,
    combine,
    credit_rewards,
    distance_credit,
    distill_rewards,
    positive_part,
    prefix_rewards,
    rank_penalty_rewards,
    ranker_rewards,
    sibling_advantages,
    target_rank,
    value_rewards,
)
from .advantages import clipped_surrogate as surrogate
from .advantages import k3_kl as kl_k3
from .config import A2POConfig

__all__ = ["Policy", "RankerFn", "RankerTopFn", "a2po_step", "business_rewards",
           "extra_candidates", "later_training_items", "rollout_groups", "sequence_log_probs"]


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
                   cfg: A2POConfig, gen: torch.Generator | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(B, G) distinct items per history, ordered by the policy's log-probability (-1 when
    unreachable): the beam top-G, or with ``cfg.rollout == "sample"`` a sample without
    replacement drawn with ``gen``; and their log-probabilities under the policy (B, G)."""
    sample = gen if cfg.rollout == "sample" else None
    items, scores = constrained_beam_search(model, ids, mask, trie, vocab, cfg.group_size,
                                            sample=sample, temperature=cfg.temperature)
    return items.cpu().numpy(), scores.float().cpu().numpy()


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
                     later: Sequence[dict[int, int]] | None = None, *,
                     ranker_log_probs: np.ndarray | None = None, ranker_shape: str = "logprob",
                     ranker_temperature: float = 1.0, hit_weight: float = 0.0,
                     policy_log_probs: np.ndarray | None = None, ranker_weight: float = 1.0,
                     ref_log_probs: np.ndarray | None = None) -> np.ndarray:
    """r_biz (B, G) of ``kind`` in BUSINESS_REWARDS for groups ``items`` (B, G) (-1 = none);
    ``later`` (kind future): per group, the user's later training items and their distance;
    ``ranker_log_probs`` (kind ranker): the ranker's log-probabilities (B, G) of the items,
    shaped by ``ranker_shape`` and ``ranker_temperature``, plus ``hit_weight`` x the rank
    reward; ``policy_log_probs`` (shape distill): the rollout policy's (B, G), and with
    ``ranker_weight`` < 1 the reference's ``ref_log_probs`` (B, G) in the teacher."""
    safe = np.where(items >= 0, items, 0)
    if kind == "ranker":
        if ranker_log_probs is None:
            raise ValueError("the ranker reward needs the ranker's log-probabilities")
        s = np.where(items >= 0, ranker_log_probs, np.nan)
        if ranker_shape == "distill":
            if policy_log_probs is None:
                raise ValueError("the distill shape needs the policy's log-probabilities")
            r = distill_rewards(s, policy_log_probs, ranker_temperature, ranker_weight,
                                ref_log_probs)
        else:
            r = ranker_rewards(s, ranker_shape, ranker_temperature)
        if hit_weight:
            r = r + hit_weight * rank_penalty_rewards(target_rank(items, targets),
                                                      items.shape[1])
        return r
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
# (histories, items (B, G), -1 = none) -> the ranker's log-probabilities (B, G), NaN = none
RankerFn = Callable[[Sequence[Sequence[int]], np.ndarray], np.ndarray]
# (histories, k) -> the ranker's k best items (B, k) per history, history items excluded
RankerTopFn = Callable[[Sequence[Sequence[int]], int], np.ndarray]


def extra_candidates(groups: np.ndarray, ranked: np.ndarray, n: int) -> np.ndarray:
    """(B, n): per row, the first ``n`` items of ``ranked`` (B, M), best first, that are not in
    the row's group ``groups`` (B, G) (-1 = none); -1 where fewer remain."""
    out = np.full((len(groups), n), -1, dtype=np.int64)
    for b, (group, row) in enumerate(zip(groups, ranked, strict=True)):
        taken = set(int(x) for x in group if x >= 0)
        new = [int(x) for x in row if x >= 0 and int(x) not in taken][:n]
        out[b, :len(new)] = new
    return out


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


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering range(n)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _rollout(p: Policy, cfg: A2POConfig, batch, gen) -> tuple:
    """Encoder inputs of the step's histories and their groups, rolled out ``chunk_users``
    groups at a time (beam groups do not depend on the chunking; sampled ones are drawn chunk
    by chunk)."""
    device = next(p.model.parameters()).device
    ids, mask = p.vocab.encode_history([h for _, h, _ in batch], p.codes, p.max_history,
                                       per_item=p.model.per_item)
    ids, mask = ids.to(device), mask.to(device)
    groups = [rollout_groups(p.model, ids[sl], mask[sl], p.trie, p.vocab, cfg, gen)
              for sl in chunks(len(batch), cfg.chunk_users)]
    return (ids, mask, np.concatenate([g[0] for g in groups]),
            np.concatenate([g[1] for g in groups]))


def _item_log_probs(model, p: Policy, cfg: A2POConfig, ids, mask, items: np.ndarray, *,
                    tokens: bool = False) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
    """log p(y | history) (B, G) of the groups' items under ``model`` (-inf where there is no
    item), ``chunk_users`` groups at a time, without gradients; with ``tokens`` also the
    per-token log-probabilities (B*G, L), row b*G + g (item 0 where there is none)."""
    G = items.shape[1]
    out = np.full(items.shape, -np.inf)
    per_token = []
    with torch.no_grad():
        for sl in chunks(len(items), cfg.chunk_users):
            part = items[sl]
            labels = p.vocab.target_tokens(np.where(part >= 0, part, 0).reshape(-1), p.codes)
            user_of = torch.arange(sl.stop - sl.start, device=ids.device).repeat_interleave(G)
            hidden = model.encode(ids[sl], mask[sl])
            lp_tok = sequence_log_probs(model, hidden[user_of], mask[sl][user_of],
                                        labels.to(ids.device), p.vocab)  # (rows, L)
            if tokens:
                per_token.append(lp_tok)
            lp = lp_tok.sum(1)
            out[sl] = np.where(part >= 0, lp.view(-1, G).double().cpu().numpy(), -np.inf)
    return (out, torch.cat(per_token)) if tokens else out


def _ref_item_log_probs(p: Policy, cfg: A2POConfig, ids, mask, items: np.ndarray
                        ) -> tuple[np.ndarray, torch.Tensor]:
    """log pi_ref(y | history) (B, G) under the frozen SFT reference (-inf: no item), and its
    per-token log-probabilities (B*G, L), which the update's KL term reuses."""
    return _item_log_probs(p.ref, p, cfg, ids, mask, items, tokens=True)


def _with_ranker_candidates(p: Policy, cfg: A2POConfig, ids, mask, batch, items: np.ndarray,
                            lp_items: np.ndarray, ranker_top: RankerTopFn | None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The groups (B, G + N) with the ranker's ``ranker_candidates`` N best items the policy did
    not propose appended, and the policy's log-probabilities of all of them."""
    if ranker_top is None:
        raise ValueError("--ranker-candidates needs the ranker's top items")
    n = cfg.ranker_candidates
    extra = extra_candidates(items, ranker_top([h for _, h, _ in batch], n + items.shape[1]), n)
    lp_extra = _item_log_probs(p.model, p, cfg, ids, mask, extra)
    return np.concatenate([items, extra], axis=1), np.concatenate([lp_items, lp_extra], axis=1)


def _advantages(items: np.ndarray, batch, cfg: A2POConfig, codes: np.ndarray, *, judged,
                semantic, values, later, ranker: RankerFn | None = None,
                policy_log_probs: np.ndarray | None = None,
                ref_log_probs: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Advantages (B, G) of the groups and the reward statistics to log; ``policy_log_probs``
    and ``ref_log_probs`` (B, G) are the rollout policy's and the reference's log-probabilities
    of the items."""
    targets = np.asarray([t for _, _, t in batch], dtype=np.int64)
    valid = items >= 0
    safe = np.where(valid, items, 0)
    scored = (ranker([h for _, h, _ in batch], items)
              if cfg.business == "ranker" and ranker is not None else None)
    r_biz = np.where(valid, business_rewards(
        cfg.business, items, targets, codes, values, later, ranker_log_probs=scored,
        ranker_shape=cfg.ranker_shape, ranker_temperature=cfg.ranker_temperature,
        hit_weight=cfg.hit_weight, policy_log_probs=policy_log_probs,
        ranker_weight=cfg.teacher_weight, ref_log_probs=ref_log_probs), 0.0)
    r_sem = None
    if semantic is not None and ADVANTAGES[cfg.advantage].uses_judge and judged.any():
        r_sem = np.full(items.shape, np.nan)
        for b in np.flatnonzero(judged):
            r_sem[b] = semantic(batch[b][0], batch[b][1], safe[b])
    unscaled = cfg.business == "ranker" and cfg.ranker_shape in UNSCALED_SHAPES
    adv, stats = combine(r_biz, r_sem, cfg.advantage, judged, scale_biz=not unscaled)
    stats = {"hit_fraction": float((target_rank(items, targets) >= 0).mean()), **stats}
    adv = np.where(valid, adv, 0.0)
    if cfg.sibling:  # (B, G, L): one advantage per SID token
        adv = sibling_advantages(r_biz, codes[safe], valid)
    if cfg.positive_only:
        adv = positive_part(adv)
    return adv, stats


@dataclass
class _Chunk:
    """One chunk of a step's update: its groups, the gradient-carrying rollouts in it and what
    the loss needs for them (the reference log-probs; pi_old once the first epoch set it)."""

    groups: slice
    n_rows: int  # gradient-carrying rollouts (0: a zero-weighted stand-in row keeps DDP in step)
    labels: torch.Tensor  # (n_rows [+ targets], L) SID tokens scored
    user_of: torch.Tensor  # (same,) the chunk's history each row is scored under
    adv: torch.Tensor  # (n_rows,), or (n_rows, L) per token
    lp_ref: torch.Tensor  # (n_rows, L)
    lp_old: torch.Tensor | None = None


def _plan(p: Policy, cfg: A2POConfig, ids, mask, items: np.ndarray, adv: np.ndarray,
          targets: np.ndarray, rows: np.ndarray, distributed: bool,
          ref_tokens: torch.Tensor | None = None) -> list[_Chunk]:
    """The chunks of the update; with an NLL anchor each chunk also scores its targets.
    ``ref_tokens`` (B*G, L): the reference's per-token log-probabilities of the groups when the
    step already scored them (a fused teacher), else the reference scores the rollouts here."""
    device = next(p.model.parameters()).device
    G = items.shape[1]
    safe = np.where(items >= 0, items, 0).reshape(-1)
    flat_adv = adv.reshape(len(items) * G, -1)  # (B*G, 1), or (B*G, L) per token
    out = []
    for sl in chunks(len(items), cfg.chunk_users):
        mine = rows[(rows >= sl.start * G) & (rows < sl.stop * G)]
        n_rows = int(mine.size)
        if not n_rows and not distributed and not cfg.nll_weight:
            continue  # nothing to learn here, and no other process to keep in step
        if not n_rows:  # a zero-weighted stand-in: every process runs each chunk's backward
            mine = np.asarray([sl.start * G])
        labels = p.vocab.target_tokens(safe[mine], p.codes)
        user_of = mine // G - sl.start
        if cfg.nll_weight:
            labels = torch.cat([labels, p.vocab.target_tokens(targets[sl], p.codes)])
            user_of = np.concatenate([user_of, np.arange(sl.stop - sl.start)])
        user_of = torch.as_tensor(user_of, device=device)
        n_roll = len(mine)
        if ref_tokens is not None:
            lp_ref = ref_tokens[torch.as_tensor(mine, device=ref_tokens.device)].to(device)
        else:
            with torch.no_grad():
                h_ref = p.ref.encode(ids[sl], mask[sl])
                lp_ref = sequence_log_probs(p.ref, h_ref[user_of[:n_roll]],
                                            mask[sl][user_of[:n_roll]],
                                            labels[:n_roll].to(device), p.vocab)
        a = torch.as_tensor(flat_adv[mine], dtype=torch.float32, device=device)
        out.append(_Chunk(sl, n_rows, labels.to(device), user_of,
                          a[:, 0] if a.shape[1] == 1 else a, lp_ref))
    return out


def _update(p: Policy, cfg: A2POConfig, ids, mask, items: np.ndarray, adv: np.ndarray,
            targets: np.ndarray, ref_tokens: torch.Tensor | None = None) -> dict:
    """``ppo_epochs`` clipped-surrogate + KL (+ NLL anchor) updates, the gradient of each
    accumulated over the chunks. Every term is a mean over the whole step, as without chunks:
    a chunk's surrogate and KL weigh by its share of the gradient-carrying rollouts, its NLL
    by its share of the groups (under torchrun also across processes, DDP averaging them)."""
    size = p.world.size if p.world is not None else 1
    distributed = size > 1
    log: dict[str, Any] = {"loss": None, "kl": None, "clip_fraction": None}
    per_rollout = np.abs(adv).reshape(len(items) * items.shape[1], -1)  # (B*G, 1 or L)
    rows = np.flatnonzero(per_rollout.max(1) > 0)  # rollouts that carry a gradient
    n_mine = int(rows.size)
    n_all = _all_sum(n_mine, p.world)  # over every process: all update, or none does
    log["rollouts_with_gradient"] = n_mine
    if not n_all and not cfg.nll_weight:
        return log
    groups_all = _all_sum(len(items), p.world)
    plan = _plan(p, cfg, ids, mask, items, adv, targets, rows, distributed, ref_tokens)
    for epoch in range(cfg.ppo_epochs):
        p.optimizer.zero_grad(set_to_none=True)
        total = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "nll": 0.0}
        for i, c in enumerate(plan):
            sync = not distributed or i == len(plan) - 1
            with contextlib.nullcontext() if sync else p.scorer.no_sync():
                lp_all = p.scorer(ids[c.groups], mask[c.groups], c.user_of, c.labels)
                n_roll = c.lp_ref.shape[0]
                lp = lp_all[:n_roll]  # (n_roll, L)
                if epoch == 0:
                    # eval mode (no dropout) and no update yet: this is pi_old, so the first
                    # epoch's ratio is exactly 1, as GRPO intends
                    c.lp_old = lp.detach()
                tok_mask = torch.ones_like(lp)
                pg, clip_frac = surrogate(lp, c.lp_old, c.adv, tok_mask, cfg.clip)
                kl = kl_k3(lp, c.lp_ref, tok_mask)
                term = pg + cfg.beta * kl
                loss = (c.n_rows * size / n_all if n_all else 0.0) * term
                n_groups = c.groups.stop - c.groups.start
                if cfg.nll_weight:
                    nll = -lp_all[n_roll:].mean()
                    loss = loss + cfg.nll_weight * n_groups * size / groups_all * nll
                    total["nll"] += n_groups / len(items) * float(nll.detach())
                loss.backward()
            # the log: this process's means over its rollouts (and its groups for the NLL)
            share_rows = c.n_rows / n_mine if n_mine else 0.0
            total["loss"] += share_rows * float(term.detach())
            total["kl"] += share_rows * float(kl.detach())
            total["clip_fraction"] += share_rows * float(clip_frac)
        torch.nn.utils.clip_grad_norm_(p.model.parameters(), 1.0)
        p.optimizer.step()
    if n_mine:
        log.update(loss=total["loss"], kl=total["kl"], clip_fraction=total["clip_fraction"])
    if cfg.nll_weight:
        log["nll"] = total["nll"]
    return log


def a2po_step(p: Policy, batch: Sequence[tuple[int, list[int], int]], *, cfg: A2POConfig,
              judged: np.ndarray, semantic: SemanticFn | None = None,
              values: np.ndarray | None = None, gen: torch.Generator | None = None,
              later: Sequence[dict[int, int]] | None = None,
              ranker: RankerFn | None = None, ranker_top: RankerTopFn | None = None
              ) -> dict[str, float]:
    """One A2PO step on ``batch`` = [(user index, history, next item)]: rollouts, rewards,
    advantages, update. ``judged`` (B,) marks the groups given a semantic reward; ``values``
    (business value), ``gen`` (sampled rollouts), ``later`` (business future), ``ranker``
    (business ranker) and ``ranker_top`` (--ranker-candidates) as the config asks. Returns
    this process's step log."""
    t0 = time.perf_counter()
    ids, mask, items, lp_items = _rollout(p, cfg, batch, gen)  # items, lp_items (B, G)
    if cfg.ranker_candidates:  # (B, G + N)
        items, lp_items = _with_ranker_candidates(p, cfg, ids, mask, batch, items, lp_items,
                                                  ranker_top)
    t1 = time.perf_counter()
    lp_ref, ref_tokens = (_ref_item_log_probs(p, cfg, ids, mask, items)
                          if cfg.business == "ranker" and cfg.teacher_weight < 1 else (None, None))
    adv, log = _advantages(items, batch, cfg, p.codes, judged=judged, semantic=semantic,
                           values=values, later=later, ranker=ranker,
                           policy_log_probs=lp_items, ref_log_probs=lp_ref)
    t2 = time.perf_counter()
    targets = np.asarray([t for _, _, t in batch], dtype=np.int64)
    log.update(_update(p, cfg, ids, mask, items, adv, targets, ref_tokens))
    log.update(rollout_s=t1 - t0, reward_s=t2 - t1, update_s=time.perf_counter() - t2)
    return log
