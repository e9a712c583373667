"""`sgrec train --model sasrec`'s config: RUN/data -> RUN/sasrec, the SASRec baseline."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import StepConfig, option
from ..validate import check_ints, check_num, require


@dataclass
class SASRecConfig(StepConfig):
    """SASRec with cross-entropy over all items (docs/design.md §3)."""

    hidden: int = option(64, "Width of the transformer and the item table.")
    blocks: int = option(2, "Self-attention blocks.")
    heads: int = option(1, "Attention heads.")
    dropout: float = option(0.2, "Dropout.")
    max_len: int | None = option(None, "History items read [default: RUN/data's max "
                                 "history].")
    lr: float = option(1e-3, "Adam learning rate.")
    weight_decay: float = option(0.0, "Weight decay.")
    batch_size: int = option(256, "Users per batch.")
    epochs: int = option(200, "Epoch budget (early stopping on validation NDCG@10).")
    patience: int = option(10, "Epochs without a better validation NDCG@10 before stopping.")
    seed: int = option(0, "Random seed.")

    def validate(self) -> None:
        check_ints(self, ("hidden", "blocks", "heads", "batch_size", "epochs", "patience"), 1)
        check_ints(self, ("seed",), 0)
        if self.max_len is not None:
            check_ints(self, ("max_len",), 1)
        require(self.hidden % self.heads == 0,
                f"SASRec hidden {self.hidden!r} must be divisible by heads {self.heads!r}")
        check_num("dropout", self.dropout, of=self, low=0, high=1, high_open=True)
        check_num("lr", self.lr, of=self, low=0, low_open=True)
        check_num("weight_decay", self.weight_decay, of=self, low=0)
