"""Prefix trie over item SIDs stored as dense per-depth tables, for vectorised decoding.

Nodes at depth ``l`` are numbered ``0..n_nodes_l-1`` (depth 0 holds only the root, node 0).
``child[l][node, code]`` is the depth ``l+1`` node reached by appending ``code``, or -1 when no
item has that prefix. Depth ``L`` nodes are leaves; ``leaf_item[leaf]`` is the item index.
Dense tables cost ``n_nodes_l * K_l`` ints per level (a few MB for 256-code levels), and in return
one gather answers "which codes are allowed" for every beam at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SidTrie:
    codebook_sizes: list[int]
    child: list[torch.Tensor]  # child[l]: LongTensor (n_nodes_l, K_l), -1 where absent
    leaf_item: torch.Tensor  # LongTensor (n_leaves,)

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_sizes: list[int]) -> SidTrie:
        """Build the trie; ValueError on duplicate SIDs or codes outside the codebooks."""
        codes = np.asarray(codes, dtype=np.int64)
        sizes = [int(k) for k in codebook_sizes]
        n, depth = codes.shape if codes.ndim == 2 else (0, -1)
        if depth != len(sizes) or n == 0:
            raise ValueError(f"codes must have shape (N>0, {len(sizes)}), got {codes.shape}")
        if codes.min() < 0 or (codes >= np.array(sizes)).any():
            raise ValueError("codes outside the codebook ranges")
        # node id of every item's prefix at each depth: depth 0 is the root for all
        node = np.zeros(n, dtype=np.int64)
        child = []
        for lvl in range(depth):
            _, next_node = np.unique(codes[:, : lvl + 1], axis=0, return_inverse=True)
            next_node = next_node.reshape(-1)  # numpy 2 may return (N, 1)
            table = np.full((int(node.max()) + 1, sizes[lvl]), -1, dtype=np.int64)
            table[node, codes[:, lvl]] = next_node
            child.append(torch.from_numpy(table))
            node = next_node
        n_leaves = int(node.max()) + 1
        if n_leaves != n:
            dup = n - n_leaves
            raise ValueError(f"duplicate SIDs: {dup} item(s) share a SID with another item")
        leaf_item = np.empty(n, dtype=np.int64)
        leaf_item[node] = np.arange(n)
        return cls(sizes, child, torch.from_numpy(leaf_item))

    def to(self, device: torch.device | str) -> SidTrie:
        return SidTrie(
            self.codebook_sizes, [c.to(device) for c in self.child], self.leaf_item.to(device)
        )

    def items_of(self, codes: torch.Tensor) -> torch.Tensor:
        """(M, L) codes -> (M,) item indices, -1 for SIDs not in the catalogue."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.leaf_item.device)
        node = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for lvl, table in enumerate(self.child):
            code = codes[:, lvl]
            ok = (node >= 0) & (code >= 0) & (code < table.shape[1])
            nxt = table[node.clamp(min=0), code.clamp(0, table.shape[1] - 1)]
            node = torch.where(ok, nxt, torch.full_like(nxt, -1))
        return torch.where(node >= 0, self.leaf_item[node.clamp(min=0)], node)
