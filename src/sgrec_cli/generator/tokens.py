"""Token vocabulary for semantic IDs: special tokens plus one contiguous token range per level.

Layout (T5 conventions): ``PAD=0`` (also the decoder start token, as in T5), ``EOS=1``, ``BOS=2``
(reserved, unused by T5), then level 0 codes, level 1 codes, ... Level ``l`` code ``c`` is token
``offset[l] + c`` with ``offset[0] = 3``. Keeping each level in its own range means the decoder
never confuses "code 5 at level 0" with "code 5 at level 1", and a level's tokens form one slice of
the logits, which is what constrained decoding masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

PAD = 0
EOS = 1
BOS = 2
NUM_SPECIAL = 3
DECODER_START = PAD  # T5 starts decoding from the pad token


class SidVocab:
    """Maps SID codes to token ids and back."""

    def __init__(self, codebook_sizes: Sequence[int]):
        sizes = [int(k) for k in codebook_sizes]
        if not sizes or any(k < 1 for k in sizes):
            raise ValueError(f"codebook sizes must be a non-empty list of positive ints: {sizes}")
        self.codebook_sizes: list[int] = sizes
        self.offsets: list[int] = np.concatenate([[NUM_SPECIAL], NUM_SPECIAL + np.cumsum(sizes)])[
            :-1
        ].tolist()
        self.vocab_size: int = NUM_SPECIAL + sum(sizes)
        # (L,) offsets as a tensor, broadcast against (..., L) code arrays
        self._offsets_t = torch.tensor(self.offsets, dtype=torch.long)
        self._sizes_t = torch.tensor(sizes, dtype=torch.long)

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def level_range(self, level: int) -> tuple[int, int]:
        """Token ids ``[start, stop)`` of one level."""
        start = self.offsets[level]
        return start, start + self.codebook_sizes[level]

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.num_levels:
            raise ValueError(f"codes must have shape (N, {self.num_levels}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or (codes >= np.array(self.codebook_sizes)).any()):
            raise ValueError("codes outside the codebook ranges")
        return codes.astype(np.int64, copy=False)

    def code_tokens(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) codes -> (N, L) token ids."""
        return self._check_codes(codes) + np.asarray(self.offsets, dtype=np.int64)

    def encode_history(
        self, histories: Sequence[Sequence[int]], codes: np.ndarray, max_items: int,
        *, per_item: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder inputs for a batch of users.

        Each history (item indices, oldest first) keeps its ``max_items`` most recent items, whose
        SID tokens are flattened in order and followed by ``EOS``; with ``per_item`` (the
        ``items`` input mode) each item is one position, ``item index + 1``, and no EOS. Rows are
        right-padded with ``PAD`` = 0 (T5's relative attention makes the padding side irrelevant
        once masked). Returns ``input_ids`` and ``attention_mask``, both LongTensor (B, T).
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        tokens = self.code_tokens(codes)  # (N, L)
        n_items = tokens.shape[0]
        rows = []
        for hist in histories:
            recent = np.asarray(list(hist)[-max_items:], dtype=np.int64)
            if recent.size and (recent.min() < 0 or recent.max() >= n_items):
                raise ValueError(f"history item outside 0..{n_items - 1}")
            if per_item:
                rows.append(recent + 1)  # (n,)
            else:
                rows.append(np.concatenate([tokens[recent].reshape(-1), [EOS]]))  # (n*L + 1,)
        width = max(1, max((len(r) for r in rows), default=1))
        input_ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.from_numpy(row)
            attention_mask[i, : len(row)] = 1
        return input_ids, attention_mask

    def target_tokens(self, items: Sequence[int] | np.ndarray, codes: np.ndarray) -> torch.Tensor:
        """Decoder targets: the SID tokens of ``items``, LongTensor (B, L) (no EOS: SIDs have
        a fixed length, so decoding stops after L tokens)."""
        tokens = self.code_tokens(codes)
        idx = np.asarray(items, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= tokens.shape[0]):
            raise ValueError(f"target item outside 0..{tokens.shape[0] - 1}")
        return torch.from_numpy(tokens[idx])

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., L) token ids -> (..., L) codes; ValueError on a token outside its level's range."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.shape[-1] != self.num_levels:
            raise ValueError(f"last dim must be {self.num_levels}, got {tuple(tokens.shape)}")
        codes = tokens - self._offsets_t.to(tokens.device)
        if ((codes < 0) | (codes >= self._sizes_t.to(tokens.device))).any():
            raise ValueError("token outside its level's code range")
        return codes
