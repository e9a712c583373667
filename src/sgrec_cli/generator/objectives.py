"""One training batch's loss under each ``--objective`` (``SFTConfig``).

- ``prefix``: a batch of examples (history -> next item), each encoded on its own;
- ``sequence``: a batch of user windows (``sequences.py``), one causal encoder pass and one
  decoder pass each train every position's next item.

Both give the mean over the batch's targets of ``losses.target_losses``, plus, for a model with
a dense head, the mean of its cross-entropy: the same quantity for the same targets, however
they are batched (``tests/test_sequence_training.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import target_losses
from .tokens import SidVocab
from .trie import SidTrie


@dataclass(frozen=True)
class LossSettings:
    vocab: SidVocab
    trie: SidTrie
    item_weight: float = 0.0
    first_level_weight: float = 1.0
    hard_negatives: int = 0

    @property
    def plain(self) -> bool:
        """T5's own loss (whole-vocabulary token cross-entropy, levels alike)."""
        return (not self.item_weight and self.first_level_weight == 1.0
                and not self.hard_negatives)

    def per_target(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return target_losses(logits, labels, self.vocab, self.trie,
                             item_weight=self.item_weight,
                             first_level_weight=self.first_level_weight,
                             hard_negatives=self.hard_negatives)


def prefix_loss(model, batch: tuple[torch.Tensor, ...], how: LossSettings,
                device: torch.device) -> torch.Tensor:
    """``batch``: (input_ids, attention_mask, labels (B, L), targets (B,)) of B examples.
    ``model`` may be DDP-wrapped."""
    ids, mask, labels, targets = (x.to(device) for x in batch)
    inner = getattr(model, "module", model)
    out = model(input_ids=ids, attention_mask=mask, labels=labels,
                items=targets if inner.hybrid else None)
    if how.plain:
        return out.loss  # T5's loss (+ the dense head's), as before these options existed
    loss = how.per_target(out.logits, labels).mean()
    return loss + out.dense_loss if inner.hybrid else loss


def sequence_loss(model, batch: tuple[torch.Tensor, ...], how: LossSettings,
                  device: torch.device) -> torch.Tensor:
    """``batch``: ``sequences.encode_windows``' tensors of B windows."""
    ids, mask, labels, targets, trained = (x.to(device) for x in batch)
    inner = getattr(model, "module", model)
    logits, states = model(input_ids=ids, attention_mask=mask, position_labels=labels)
    loss = how.per_target(logits[trained], labels[trained]).mean()
    if inner.hybrid:
        lp = inner._dense(inner.dense_proj(states[trained][:, 0]))
        loss = loss + torch.nn.functional.nll_loss(lp, targets[trained])
    return loss


def n_targets(batch: tuple[torch.Tensor, ...], objective: str) -> int:
    """The number of training targets in a batch."""
    return int(batch[4].sum()) if objective == "sequence" else int(batch[2].shape[0])
