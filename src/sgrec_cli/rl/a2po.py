"""The A2PO loop (DESIGN §7): constrained-beam rollouts from the current policy, business and
semantic rewards, group advantages (``advantages.combine``), clipped surrogate + beta * KL(k3) to
the frozen SFT reference.

One step: B training examples (history, next item) are drawn; the policy's top-G distinct items
per example by constrained beam search form the groups; rewards (B, G) -> advantages (B, G);
``ppo_epochs`` gradient steps on the SID tokens of the B*G rollouts, with log-probabilities of
the rollout policy frozen as pi_old (so the first epoch has ratio 1).
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
    judge_mask,
    prefix_rewards,
    rank_penalty_rewards,
    target_rank,
)
from .advantages import clipped_surrogate as surrogate
from .advantages import k3_kl as kl_k3

BUSINESS_REWARDS = ("rank", "prefix")


@dataclass
class A2POConfig:
    """`sgrec train --a2po`: RUN/sft + RUN/judge -> RUN/a2po.

    advantage     a2po (default), biz (GRPO on the business reward: MiniOneRec's recipe),
                  reward-sum, adv-sum: the paper's ablations, one code path
    group_size    G distinct items per group (constrained beam search)
    business      rank (1 for the next item, rank-aware penalty for the others when it is in the
                  group) or prefix (partial credit per matching SID level: denser)
    rho           share of groups whose semantic reward is consulted (paper: 0.05)
    beta, clip    KL(k3) weight to the SFT reference; PPO clip epsilon
    steps         optimisation steps of ``batch_users`` groups each
    """

    advantage: str = "a2po"
    group_size: int = 16
    business: str = "rank"
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


def rollout_groups(model, ids: torch.Tensor, mask: torch.Tensor, trie: SidTrie, vocab: SidVocab,
                   group_size: int) -> np.ndarray:
    """(B, G) distinct items per history by constrained beam search (-1 when unreachable)."""
    items, _ = constrained_beam_search(model, ids, mask, trie, vocab, group_size)
    return items.cpu().numpy()


SemanticFn = Callable[[Sequence[int], Sequence[int], np.ndarray], np.ndarray]


def a2po_step(model, ref, opt, cfg: A2POConfig, vocab: SidVocab, trie: SidTrie,
              codes: np.ndarray, batch: Sequence[tuple[int, list[int], int]],
              semantic: SemanticFn | None, max_history: int,
              rng: np.random.Generator) -> dict[str, float]:
    """One A2PO step on ``batch`` = [(user index, history, next item)]; returns the step log."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    ids, mask = vocab.encode_history([h for _, h, _ in batch], codes, max_history)
    ids, mask = ids.to(device), mask.to(device)
    items = rollout_groups(model, ids, mask, trie, vocab, cfg.group_size)  # (B, G)
    t1 = time.perf_counter()

    targets = np.asarray([t for _, _, t in batch], dtype=np.int64)
    valid = items >= 0
    safe = np.where(valid, items, 0)
    rank = target_rank(items, targets)
    if cfg.business == "rank":
        r_biz = rank_penalty_rewards(rank, cfg.group_size)
    else:
        r_biz = prefix_rewards(codes[safe], codes[targets])
    judged = judge_mask(len(batch), cfg.rho, rng)
    r_sem = None
    if semantic is not None and cfg.advantage != "biz" and judged.any():
        r_sem = np.full(items.shape, np.nan)
        for b in np.flatnonzero(judged):
            r_sem[b] = semantic(batch[b][0], batch[b][1], safe[b])
    adv, stats = combine(r_biz, r_sem, cfg.advantage, judged)
    adv = np.where(valid, adv, 0.0)
    t2 = time.perf_counter()

    log = {"hit_fraction": float((rank >= 0).mean()), **stats}
    log.update(loss=0.0, kl=0.0, clip_fraction=0.0)
    rows = np.flatnonzero(np.abs(adv).reshape(-1) > 0)  # rollouts that carry a gradient
    if rows.size:
        g = cfg.group_size
        labels = vocab.target_tokens(safe.reshape(-1)[rows], codes).to(device)  # (N, L)
        user_of = torch.as_tensor(rows // g, device=device)
        a = torch.as_tensor(adv.reshape(-1)[rows], dtype=torch.float32, device=device)
        tok_mask = torch.ones(labels.shape, device=device)
        with torch.no_grad():
            h_ref = ref.get_encoder()(input_ids=ids, attention_mask=mask)[0]
            lp_ref = sequence_log_probs(ref, h_ref[user_of], mask[user_of], labels, vocab)
        for epoch in range(cfg.ppo_epochs):
            # the encoder runs once per user; its states are shared by that user's rollouts
            hidden = model.get_encoder()(input_ids=ids, attention_mask=mask)[0]  # (B, S, D)
            lp = sequence_log_probs(model, hidden[user_of], mask[user_of], labels, vocab)
            if epoch == 0:
                # eval mode (no dropout) and no update yet: this is pi_old, so the first
                # epoch's ratio is exactly 1, as GRPO intends
                lp_old = lp.detach()
            pg, clip_frac = surrogate(lp, lp_old, a, tok_mask, cfg.clip)
            kl = kl_k3(lp, lp_ref, tok_mask)
            loss = pg + cfg.beta * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        log.update(loss=float(loss.detach()), kl=float(kl.detach()),
                   clip_fraction=float(clip_frac))
    t3 = time.perf_counter()
    log.update(rollouts_with_gradient=int(rows.size), rollout_s=t1 - t0, reward_s=t2 - t1,
               update_s=t3 - t2)
    return log
