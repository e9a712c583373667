"""SASRec (Kang & McAuley, 2018), the standard sequential baseline, trained with cross-entropy
over all items (the variant that the reference figures of docs/design.md §3 use).

Input: the most recent ``max_len`` items of a history, right-aligned, 0 = padding (item index
i is token i + 1). Causal self-attention blocks; the last position's hidden state is scored
against the item embedding table (tied weights). Training uses every prefix of each user's
training portion s_1..s_{n-2}, all positions at once; early stopping on validation NDCG@10.
At ranking time the user's history items are excluded (no dataset here has repeats).
`python bench/baselines.py --run RUN` trains it and writes the test figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..eval.metrics import ndcg_at_k, ranks_of_targets, recall_at_k
from .config import SASRecConfig

__all__ = ["SASRec", "recommend", "train_sasrec"]


class SASRec(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        if cfg.max_len is None:
            raise ValueError("SASRecConfig.max_len must be set (the step sets it from RUN/data)")
        self.cfg = cfg
        self.item = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, cfg.hidden, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        mask = torch.triu(torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", mask, persistent=False)
        # the table is also the output layer: N(0, 1) init would give logits of std ~sqrt(H)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def hidden_states(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (B, T) item tokens, 0 = padding -> (B, T, H)."""
        t = seq.shape[1]
        h = self.item(seq) * self.cfg.hidden ** 0.5 + self.pos.weight[:t][None]
        h = self.drop(h) * (seq > 0).unsqueeze(-1)
        h = self.blocks(h, mask=self.causal[:t, :t])
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., n_items) scores over real items (padding token dropped)."""
        return h @ self.item.weight[1:].T


def left_pad(histories: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """Right-align the most recent ``max_len`` items as tokens (index + 1); (B, max_len)."""
    out = torch.zeros(len(histories), max_len, dtype=torch.long)
    for b, hist in enumerate(histories):
        recent = list(hist)[-max_len:]
        if recent:
            out[b, max_len - len(recent):] = torch.tensor(recent) + 1
    return out


def training_tensors(sequences: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """Inputs s_1..s_{m-1} and next-item labels s_2..s_m of each training portion s_1..s_{n-2},
    cut into windows of ``max_len`` so every training prefix is predicted exactly once.
    Labels are item indices, -100 where there is no target."""
    xs, ys = [], []
    for seq in sequences:
        train = list(seq[:-2])
        # windows ending at every max_len-th position cover all targets once
        for end in range(len(train), 1, -max_len):
            start = max(0, end - max_len - 1)
            window = train[start:end]
            xs.append(window[:-1])
            ys.append(window[1:])
    x = left_pad(xs, max_len)
    y = torch.full((len(ys), max_len), -100, dtype=torch.long)
    for b, lab in enumerate(ys):
        y[b, max_len - len(lab):] = torch.tensor(lab)
    return x, y


@torch.no_grad()
def recommend(model: SASRec, histories: Sequence[Sequence[int]], k: int,
              exclude_history: bool = True, batch: int = 1024, with_scores: bool = False
              ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k item indices (U, k) by score; history items masked when ``exclude_history``.
    ``with_scores`` also returns the logits (U, k) float32."""
    model.eval()
    device = next(model.parameters()).device
    out, out_s = [], []
    for i in range(0, len(histories), batch):
        hs = histories[i:i + batch]
        seq = left_pad(hs, model.cfg.max_len).to(device)
        scores = model.logits(model.hidden_states(seq)[:, -1])  # (B, n_items)
        if exclude_history:
            for b, hist in enumerate(hs):
                scores[b, list(hist)] = -torch.inf
        top = scores.topk(k, dim=1)
        out.append(top.indices.cpu().numpy())
        out_s.append(top.values.float().cpu().numpy())
    items = np.concatenate(out)
    return (items, np.concatenate(out_s)) if with_scores else items


@torch.no_grad()
def catalogue_log_probs(model: SASRec, histories: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, N) log p(item | history) over the whole catalogue, at the history's last position,
    as training fits it (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    seq = left_pad(histories, model.cfg.max_len).to(device)
    return torch.log_softmax(model.logits(model.hidden_states(seq)[:, -1]).float(), dim=1)


@torch.no_grad()
def item_log_probs(model: SASRec, histories: Sequence[Sequence[int]], items: np.ndarray,
                   batch: int = 1024) -> np.ndarray:
    """log p(item | history) (B, G) of the items (B, G) (index; -1 = none, NaN out) under
    ``catalogue_log_probs``."""
    items = np.asarray(items)
    if items.ndim != 2 or len(items) != len(histories):
        raise ValueError(f"items {items.shape} must be (B, G) for {len(histories)} histories")
    out = np.full(items.shape, np.nan)
    for i in range(0, len(histories), batch):
        lp = catalogue_log_probs(model, histories[i:i + batch])
        part = items[i:i + batch]
        here = part >= 0
        got = lp.gather(1, torch.as_tensor(np.where(here, part, 0), device=lp.device))
        out[i:i + batch] = np.where(here, got.cpu().numpy(), np.nan)
    return out


def evaluate(model: SASRec, histories, targets, k: int = 10) -> dict[str, float]:
    ranks = ranks_of_targets(recommend(model, histories, k), np.asarray(targets))
    return {f"recall@{k}": recall_at_k(ranks, k), f"ndcg@{k}": ndcg_at_k(ranks, k)}


def train_sasrec(sequences: Sequence[Sequence[int]], n_items: int, valid_histories,
                 valid_targets, cfg: SASRecConfig, log=None) -> tuple[SASRec, list[dict]]:
    """Train with full-softmax cross-entropy; keep the state with the best validation NDCG@10."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = SASRec(n_items, cfg)
    x, y = training_tensors(sequences, cfg.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            h = model.hidden_states(x[idx])  # (B, T, H)
            lab = y[idx]
            keep = lab >= 0
            loss = nn.functional.cross_entropy(model.logits(h[keep]), lab[keep])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "loss": total / len(x),
               **evaluate(model, valid_histories, valid_targets)}
        history.append(row)
        if log:
            log(row)
        if row["ndcg@10"] > best:
            best, stale = row["ndcg@10"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model, history
