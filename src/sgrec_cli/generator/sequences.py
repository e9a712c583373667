"""Training sequences for whole-sequence training (``--objective sequence``).

The training examples of a user (every prefix of s_1..s_{n-2} predicting its next item, in
order) are one sequence again: s_1 (the first example's history) followed by every target.
A sequence of up to ``max_history + 1`` items is one window: its first m - 1 items are read,
and each position t is trained to predict item t + 1, i.e. every training example of the user
in one pass. A longer one is cut into windows of ``max_history`` read items, each target in
exactly one window (the later windows end at the sequence's end and train only the targets the
earlier ones have not), so a target early in a later window sees fewer than ``max_history``
items where the per-prefix examples would show it ``max_history``: the price of one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.split import Example
from ..errors import ConfigError
from .tokens import SidVocab


def user_sequences(examples: Sequence[Example]) -> list[list[int]]:
    """Each user's training sequence, from its examples in ``split_all``'s order."""
    out: list[list[int]] = []
    last = None
    for ex in examples:
        if ex.user != last:
            if not ex.history:
                raise ConfigError(f"user {ex.user}'s first training example has no history")
            out.append([int(ex.history[0])])
            last = ex.user
        out[-1].append(int(ex.target))
    return out


@dataclass(frozen=True)
class Window:
    items: list[int]  # the window's items: positions 0..len-2 are read, 1..len-1 targets
    first: int  # the first position whose target this window trains


def windows(sequence: Sequence[int], max_history: int) -> list[Window]:
    """Cut one sequence (>= 2 items) so that every target is trained once, with at most
    ``max_history`` items read per window."""
    n_pos = len(sequence) - 1  # read positions 0..n_pos-1, position p predicts p + 1
    if n_pos < 1:
        raise ConfigError("a training sequence needs at least 2 items")
    out, done = [], 0
    while done < n_pos:
        start = max(0, min(done, n_pos - max_history))
        stop = min(start + max_history, n_pos)
        out.append(Window(list(sequence[start:stop + 1]), done - start))
        done = stop
    return out


def encode_windows(wins: Sequence[Window], codes: np.ndarray, vocab: SidVocab
                   ) -> tuple[torch.Tensor, ...]:
    """Tensors of ``wins``, right-padded to the longest: ``input_ids`` (R, S) item index + 1
    (0 = padding), ``attention_mask`` (R, S), ``labels`` (R, S, L) the SID tokens of each
    position's next item, ``targets`` (R, S) that item (0 on padding), ``trained`` (R, S) bool:
    the positions whose target this window trains."""
    if not wins:
        raise ConfigError("no training sequences to encode")
    tokens = torch.from_numpy(vocab.code_tokens(np.asarray(codes)))
    width = max(len(w.items) - 1 for w in wins)
    rows = len(wins)
    ids = torch.zeros(rows, width, dtype=torch.long)
    targets = torch.zeros(rows, width, dtype=torch.long)
    trained = torch.zeros(rows, width, dtype=torch.bool)
    for r, w in enumerate(wins):
        items = torch.as_tensor(w.items, dtype=torch.long)
        n = len(w.items) - 1
        ids[r, :n] = items[:-1] + 1
        targets[r, :n] = items[1:]
        trained[r, w.first:n] = True
    mask = (ids > 0).long()
    return ids, mask, tokens[targets], targets, trained


def sequence_tensors(examples: Sequence[Example], codes: np.ndarray, vocab: SidVocab,
                     max_history: int) -> tuple[torch.Tensor, ...]:
    """``encode_windows`` of every user's training windows (``examples`` in split order)."""
    wins = [w for seq in user_sequences(examples) for w in windows(seq, max_history)]
    return encode_windows(wins, codes, vocab)
