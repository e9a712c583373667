"""The generator's training losses, per target and level, as pure functions of its logits.

- token loss: cross-entropy of each SID token over the whole vocabulary (T5's own loss);
- item loss: each level's softmax restricted to the trie's valid children of the target's true
  prefix; summed over the levels it is ``-log p(target item)`` under the item distribution those
  restricted softmaxes multiply out to, which sums to 1 over the catalogue (an exact,
  full-catalogue item-level softmax at the cost of a per-level one);
- hard negatives: at the first level, the target's code against the ``m`` valid codes the model
  itself ranks highest among the wrong ones (the prefixes its beam search would keep in the
  target's place): ``-log( e^{s_t} / (e^{s_t} + sum_{j in top-m wrong} e^{s_j}) )``, added to
  the first level's loss;
- level weights: the first level's share raised (the level where targets are lost), the weights
  rescaled to mean 1 so the loss keeps its scale.

A target's loss is the mean over levels of ``w_l * (token_l + item_weight * item_l)``: with
``item_weight`` 0 and equal weights exactly T5's per-token mean.
"""

from __future__ import annotations

import torch

from .diagnose import target_nodes
from .tokens import SidVocab
from .trie import SidTrie

NEG_INF = float("-inf")


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, L) cross-entropy of ``labels`` (N, L) token ids under ``logits`` (N, L, V)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    return -lp.gather(-1, labels[..., None])[..., 0]


def prefix_nodes(trie: SidTrie, codes: torch.Tensor) -> torch.Tensor:
    """(N, L) trie node of each target's prefix *before* each level (level 0: the root)."""
    after = target_nodes(trie, codes)  # the nodes after each level
    return torch.cat([torch.zeros_like(after[:, :1]), after[:, :-1]], dim=1)


def trie_nll(logits: torch.Tensor, codes: torch.Tensor, trie: SidTrie,
             vocab: SidVocab) -> torch.Tensor:
    """(N, L) ``-log`` of each target code under its level's softmax over the valid children
    of the target's true prefix; ``codes`` (N, L) the targets' SID codes (catalogue items)."""
    parents = prefix_nodes(trie, codes)
    out = []
    for level in range(vocab.num_levels):
        start, stop = vocab.level_range(level)
        valid = trie.child[level][parents[:, level]] >= 0  # (N, K)
        lv = torch.where(valid, logits[:, level, start:stop].float(), NEG_INF)
        lp = torch.log_softmax(lv, dim=-1)
        out.append(-lp.gather(1, codes[:, level:level + 1])[:, 0])
    return torch.stack(out, dim=1)


def hard_negative_nll(logits: torch.Tensor, codes: torch.Tensor, trie: SidTrie,
                      vocab: SidVocab, m: int) -> torch.Tensor:
    """(N,) first-level loss of each target against its ``m`` hardest valid wrong codes."""
    start, stop = vocab.level_range(0)
    scores = logits[:, 0, start:stop].float()  # (N, K)
    valid = (trie.child[0][0] >= 0)[None].expand_as(scores)
    target = codes[:, :1]
    wrong = valid.scatter(1, target, False)
    m = min(m, int(valid[0].sum()) - 1)
    if m < 1:
        return scores.new_zeros(scores.shape[0])
    negatives = torch.where(wrong, scores, NEG_INF).topk(m, dim=1).values  # (N, m)
    s_t = scores.gather(1, target)  # (N, 1)
    return torch.logsumexp(torch.cat([s_t, negatives], dim=1), dim=1) - s_t[:, 0]


def level_weights(n_levels: int, first: float) -> torch.Tensor:
    """(L,) weights: ``first`` for level 0, 1 for the others, rescaled to mean 1."""
    w = torch.ones(n_levels)
    w[0] = first
    return w * (n_levels / w.sum())


def target_losses(logits: torch.Tensor, labels: torch.Tensor, vocab: SidVocab,
                  trie: SidTrie | None = None, *, item_weight: float = 0.0,
                  first_level_weight: float = 1.0, hard_negatives: int = 0) -> torch.Tensor:
    """(N,) loss of each target: ``logits`` (N, L, V), ``labels`` (N, L) SID token ids."""
    per_level = token_nll(logits, labels)
    if (item_weight or hard_negatives) and trie is None:
        raise ValueError("the item-level and hard-negative losses need the trie")
    codes = vocab.tokens_to_codes(labels) if item_weight or hard_negatives else None
    if item_weight:
        per_level = per_level + item_weight * trie_nll(logits, codes, trie, vocab)
    if hard_negatives:
        extra = hard_negative_nll(logits, codes, trie, vocab, hard_negatives)
        per_level = torch.cat([per_level[:, :1] + extra[:, None], per_level[:, 1:]], dim=1)
    if first_level_weight != 1.0:
        per_level = per_level * level_weights(vocab.num_levels, first_level_weight).to(
            per_level.device)
    return per_level.mean(dim=1)
