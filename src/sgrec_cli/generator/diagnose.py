"""Where the generator loses a target: per-level accuracy and beam survival.

For a user with target SID (c_0 .. c_{L-1}):

* **teacher-forced accuracy at level l**: the decoder is fed the true prefix c_0 .. c_{l-1} and
  its most likely level-l code is c_l. ``free``: the argmax over all of the level's codes;
  ``trie``: the argmax over the codes the catalogue allows after that prefix (what constrained
  decoding chooses among). Level 0 is "first code right"; the later levels are "right given a
  right prefix".
* **beam survival at level l**: the target's prefix c_0 .. c_l is among the ``num_beams`` beams
  of the constrained beam search after level l. It can only fall: a prefix in the beam at level
  l had its parent in the beam at level l - 1. Survival at the last level is "the target is in
  the top ``num_beams``". ``lost_at[l]`` = survived level l - 1 (always, for l = 0) but not l.

``diagnose`` returns the per-user boolean tables; ``summarize_diagnosis`` the shares.

``distribution_diagnosis`` asks the same of any model that gives a distribution over catalogue
items (SASRec's softmax): a prefix's probability is the mass of the items under it, the level-l
choice given the true prefix is its most massive child (free and trie alike: no mass lies
outside the catalogue), and the beam keeps the ``num_beams`` most massive prefixes level by
level, exactly as the generator's beam keeps the prefixes its own SID probabilities rank
highest. It tells whether a level loses a target because of the SIDs (any ranker loses it
there) or because of the generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .beam import constrained_beam_search, level_log_probs
from .tokens import DECODER_START, SidVocab
from .trie import SidTrie


def target_nodes(trie: SidTrie, codes: torch.Tensor) -> torch.Tensor:
    """(B, L) target codes -> (B, L) trie nodes of their prefixes of length 1..L."""
    node = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
    out = []
    for level, table in enumerate(trie.child):
        node = table.to(codes.device)[node, codes[:, level]]
        out.append(node)
    return torch.stack(out, dim=1)


@torch.no_grad()
def teacher_forced_levels(model, vocab: SidVocab, trie: SidTrie, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor,
                          target_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(free, trie) correctness, each BoolTensor (B, L): the decoder's most likely level-l code,
    given the true prefix, is the target's (over all codes / over the allowed ones)."""
    model.eval()
    device = input_ids.device
    tokens = vocab.code_tokens(target_codes.cpu().numpy())
    tokens = torch.from_numpy(tokens).to(device)  # (B, L)
    start = torch.full((tokens.shape[0], 1), DECODER_START, dtype=torch.long, device=device)
    decoder_input = torch.cat([start, tokens[:, :-1]], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=decoder_input).logits  # (B, L, V)
    nodes = target_nodes(trie.to(device), target_codes.to(device))  # (B, L)
    parent = torch.cat([torch.zeros_like(nodes[:, :1]), nodes[:, :-1]], dim=1)
    free, constrained = [], []
    for level in range(vocab.num_levels):
        lp = level_log_probs(logits[:, level], vocab, level)  # (B, K)
        truth = target_codes[:, level].to(device)
        free.append(lp.argmax(dim=1) == truth)
        allowed = trie.child[level].to(device)[parent[:, level]] >= 0  # (B, K)
        constrained.append(torch.where(allowed, lp, float("-inf")).argmax(dim=1) == truth)
    return torch.stack(free, dim=1), torch.stack(constrained, dim=1)


@torch.no_grad()
def beam_survival(model, vocab: SidVocab, trie: SidTrie, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor, target_codes: torch.Tensor,
                  num_beams: int) -> torch.Tensor:
    """BoolTensor (B, L): the target's prefix of length l + 1 is among the beams after level l."""
    trace: list[torch.Tensor] = []
    constrained_beam_search(model, input_ids, attention_mask, trie, vocab, num_beams,
                            trace=trace)
    nodes = target_nodes(trie.to(input_ids.device), target_codes.to(input_ids.device))
    return torch.stack([(beams == nodes[:, [lvl]]).any(dim=1)
                        for lvl, beams in enumerate(trace)], dim=1)


def diagnose(model, vocab: SidVocab, trie: SidTrie, histories: Sequence[Sequence[int]],
             targets: Sequence[int], codes: np.ndarray, *, max_history: int, num_beams: int,
             batch: int = 256) -> dict[str, np.ndarray]:
    """{"free", "trie", "survival"}: per-user (U, L) boolean tables (see the module doc)."""
    device = next(model.parameters()).device
    all_codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    parts: dict[str, list[np.ndarray]] = {"free": [], "trie": [], "survival": []}
    for start in range(0, len(histories), batch):
        hist = histories[start : start + batch]
        ids, mask = vocab.encode_history(hist, codes, max_history, per_item=model.per_item)
        ids, mask = ids.to(device), mask.to(device)
        target = all_codes[np.asarray(targets[start : start + batch], dtype=np.int64)]
        free, constrained = teacher_forced_levels(model, vocab, trie, ids, mask, target)
        survived = beam_survival(model, vocab, trie, ids, mask, target, num_beams)
        for name, t in (("free", free), ("trie", constrained), ("survival", survived)):
            parts[name].append(t.cpu().numpy())
    return {name: np.concatenate(v) for name, v in parts.items()}


@torch.no_grad()
def distribution_diagnosis(log_probs: torch.Tensor, trie: SidTrie, codes: np.ndarray,
                           targets: Sequence[int], num_beams: int) -> dict[str, np.ndarray]:
    """``diagnose``'s tables for item distributions ``log_probs`` (B, N) (log p of every
    catalogue item, rows summing to 1) of B users whose next items are ``targets``."""
    device = log_probs.device
    trie = trie.to(device)
    all_codes = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=device)
    item_nodes = target_nodes(trie, all_codes)  # (N, L)
    target = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)
    t_nodes, t_codes = item_nodes[target], all_codes[target]  # (B, L)
    p = log_probs.float().exp()
    batch = p.shape[0]
    parent = torch.zeros(batch, dtype=torch.long, device=device)  # the true prefix's node
    kept = torch.zeros(batch, 1, dtype=torch.long, device=device)  # the beam's nodes
    right, survived = [], []
    for level, table in enumerate(trie.child):
        mass = p.new_zeros(batch, int(table.max()) + 1).index_add_(1, item_nodes[:, level], p)
        kids = table[parent]  # (B, K) the true prefix's children
        kid_mass = torch.where(kids >= 0, mass.gather(1, kids.clamp(min=0)), -1.0)
        right.append(kid_mass.argmax(dim=1) == t_codes[:, level])
        # (B, beams * K) children of the kept prefixes (-1: none, or an empty beam slot)
        cand = torch.where(kept[..., None] >= 0, table[kept.clamp(min=0)], -1).flatten(1)
        cand_mass = torch.where(cand >= 0, mass.gather(1, cand.clamp(min=0)), -1.0)
        top = cand_mass.topk(min(num_beams, cand.shape[1]), dim=1)
        kept = torch.where(top.values >= 0, cand.gather(1, top.indices), -1)
        survived.append((kept == t_nodes[:, [level]]).any(dim=1))
        parent = t_nodes[:, level]
    tf = torch.stack(right, dim=1).cpu().numpy()
    return {"free": tf, "trie": tf.copy(), "survival": torch.stack(survived, 1).cpu().numpy()}


def summarize_diagnosis(tables: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Shares per level: teacher-forced accuracy (free, trie), beam survival, and where
    targets are lost (``lost_at[l]``: survived level l - 1 but not level l; they sum to
    1 - survival at the last level)."""
    survival = tables["survival"]
    before = np.concatenate([np.ones_like(survival[:, :1]), survival[:, :-1]], axis=1)
    return {
        "teacher_forced_free": tables["free"].mean(0).round(4).tolist(),
        "teacher_forced_trie": tables["trie"].mean(0).round(4).tolist(),
        "beam_survival": survival.mean(0).round(4).tolist(),
        "lost_at": (before & ~survival).mean(0).round(4).tolist(),
        "users": int(survival.shape[0]),
    }
