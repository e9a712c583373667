"""One decoder step of the T5 generator for all beams of all users, without beam copies.

Why not ``model(decoder_input_ids=..., past_key_values=...)``: beam search then has to give each
of the nb beams of a user its own copy of the encoder states and of the cross-attention keys and
values (``B*nb*S*D`` floats per layer, copied again on every reorder) — over half of the decoding
time on a CPU went into those copies. Here the beams of a user are simply nb query positions
against the user's one set of cross-attention keys/values, so nothing is repeated: the same
arithmetic as T5's decoder, laid out as (B, nb, ...) instead of (B*nb, ...).

Only inference (no dropout). Equality with the ``transformers`` decoder is tested
(``tests/test_generator_beam.py``), so a change in T5's maths upstream is caught.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import T5ForConditionalGeneration


def _rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """T5LayerNorm: scale only, no mean subtraction, statistics in float32."""
    var = x.float().pow(2).mean(-1, keepdim=True)
    return norm.weight * (x * torch.rsqrt(var + norm.variance_epsilon)).to(norm.weight.dtype)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., H*dk) -> (..., H, dk)."""
    return x.view(*x.shape[:-1], n_heads, -1)


class BeamDecoder:
    """Incremental T5 decoding for ``B`` users x ``nb`` beams.

    ``start(hidden, mask)`` computes every layer's cross-attention keys/values once per user;
    ``step(tokens, parent)`` feeds one token per beam, (B, nb), after moving each beam's
    self-attention cache to its parent beam's, and returns the next-token logits (B, nb, V).
    """

    def __init__(self, model: T5ForConditionalGeneration):
        if model.config.is_gated_act:
            raise ValueError("BeamDecoder supports T5 with a plain (non-gated) feed-forward")
        self.model = model
        self.dec = model.get_decoder()
        self.n_heads = model.config.num_heads
        scale = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
        self.out_scale = model.config.d_model ** -0.5 if scale else 1.0
        self.cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_bias: torch.Tensor | None = None
        self.pos = 0

    @torch.no_grad()
    def start(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """hidden (B, S, D) encoder states, mask (B, S) 1 = real token."""
        self.cross_kv = []
        for block in self.dec.block:
            att = block.layer[1].EncDecAttention
            k = _heads(att.k(hidden), self.n_heads).transpose(1, 2)  # (B, H, S, dk)
            v = _heads(att.v(hidden), self.n_heads).transpose(1, 2)  # (B, H, S, dk)
            self.cross_kv.append((k, v))
        neg = torch.finfo(hidden.dtype).min
        # (B, 1, 1, S): padding keys get the most negative value, as T5's extended mask does
        self.cross_bias = torch.where(mask.bool(), 0.0, neg).to(hidden.dtype)[:, None, None, :]
        self.self_kv = []
        self.pos = 0

    def _self_bias(self, length: int) -> torch.Tensor:
        """(1, H, 1, length) relative position bias of the current position over the past."""
        att = self.dec.block[0].layer[0].SelfAttention
        return att.compute_bias(length, length)[:, :, -1:, :]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, parent: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, nb) LongTensor; parent (B, nb) index of each beam's parent among the
        previous step's beams (None on the first step). Returns logits (B, nb, V)."""
        batch, nb = tokens.shape
        if parent is not None:
            rows = torch.arange(batch, device=tokens.device)[:, None]  # (B, 1)
            self.self_kv = [(k[rows, parent], v[rows, parent]) for k, v in self.self_kv]
        x = self.dec.embed_tokens(tokens)  # (B, nb, D)
        bias = self._self_bias(self.pos + 1)  # (1, H, 1, t+1)
        for i, block in enumerate(self.dec.block):
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            # self-attention over this beam's own past: (B, nb, H, t+1, dk)
            h = _rms_norm(sa.layer_norm, x)
            att = sa.SelfAttention
            q = _heads(att.q(h), self.n_heads)[:, :, :, None, :]  # (B, nb, H, 1, dk)
            k_new = _heads(att.k(h), self.n_heads)[:, :, :, None, :]
            v_new = _heads(att.v(h), self.n_heads)[:, :, :, None, :]
            if len(self.self_kv) > i:
                k_past, v_past = self.self_kv[i]
                k_all = torch.cat([k_past, k_new], dim=3)
                v_all = torch.cat([v_past, v_new], dim=3)
                self.self_kv[i] = (k_all, v_all)
            else:
                k_all, v_all = k_new, v_new
                self.self_kv.append((k_all, v_all))
            w = (q @ k_all.transpose(-1, -2) + bias[:, None]).softmax(-1)  # (B, nb, H, 1, t+1)
            o = (w.to(v_all.dtype) @ v_all).reshape(batch, nb, -1)  # (B, nb, H*dk)
            x = x + att.o(o)
            # cross-attention: the nb beams are nb queries against the user's keys
            h = _rms_norm(ca.layer_norm, x)
            att = ca.EncDecAttention
            k_c, v_c = self.cross_kv[i]
            q = _heads(att.q(h), self.n_heads).transpose(1, 2)  # (B, H, nb, dk)
            w = (q @ k_c.transpose(-1, -2) + self.cross_bias).softmax(-1)  # (B, H, nb, S)
            o = (w.to(v_c.dtype) @ v_c).transpose(1, 2).reshape(batch, nb, -1)  # (B, nb, H*dk)
            x = x + att.o(o)
            # feed-forward
            h = _rms_norm(ff.layer_norm, x)
            dense = ff.DenseReluDense
            x = x + dense.wo(dense.act(dense.wi(h)))
        x = _rms_norm(self.dec.final_layer_norm, x) * self.out_scale
        self.pos += 1
        return self.model.lm_head(x)  # (B, nb, V)
