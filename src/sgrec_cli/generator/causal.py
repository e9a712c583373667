"""The T5 generator run causally, for whole-sequence training.

``causal_encode``: the encoder with attention from position t to history items 0..t only, so
that the state at t is what the model knows after the user's t-th item, whatever follows.
``decode_positions``: the decoder for every position of a sequence at once, teacher-forced:
row t reads the SID tokens of item t + 1 and cross-attends to encoder states 0..t. The
encoder's keys and values are computed once per user and shared by all of its rows (the layout
of ``beamstep.BeamDecoder``, with gradients and dropout).

One pass of these over a user's sequence gives, for every position, exactly what the model's
ordinary forward gives on that prefix alone (``tests/test_sequence_training.py``): T5's
relative positions depend only on distances, and causal attention never reads a later item.
The arithmetic is T5's (``transformers``' modules are called for their weights; the layer
order, RMS norms, unscaled attention, dropout places and the output scaling are T5's), written
out here because ``transformers`` has no causal T5 encoder nor per-row cross-attention masks.
"""

from __future__ import annotations

import torch
from torch import nn

from .tokens import DECODER_START


def _drop(model, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.dropout(x, model.config.dropout_rate, model.training)


def _attend(model, att, q_in: torch.Tensor, kv_in: torch.Tensor, add: torch.Tensor
            ) -> torch.Tensor:
    """T5 attention of ``q_in`` (..., Q, D) over ``kv_in`` (..., K, D); ``add`` broadcasts to
    (..., H, Q, K): position bias and -inf-like mask together."""
    heads = model.config.num_heads

    def split(x):  # (..., N, H*dk) -> (..., H, N, dk)
        return x.view(*x.shape[:-1], heads, -1).transpose(-2, -3)

    q, k, v = split(att.q(q_in)), split(att.k(kv_in)), split(att.v(kv_in))
    w = (q @ k.transpose(-1, -2) + add).softmax(-1)  # T5: no 1/sqrt(dk)
    w = _drop(model, w)
    out = (w @ v).transpose(-2, -3)  # (..., Q, H, dk)
    return att.o(out.reshape(*out.shape[:-2], -1))


def _mask_add(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)


def causal_encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S, D) encoder states; position t attends to the real positions 0..t (rows are
    right-padded, so those are the user's first t + 1 history items of the window)."""
    enc = model.get_encoder()
    x = _drop(model, model.embed_inputs(input_ids))
    length = x.shape[1]
    bias = enc.block[0].layer[0].SelfAttention.compute_bias(length, length, device=x.device)
    past = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    allowed = past[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, S, S)
    add = bias.to(x.dtype) + _mask_add(allowed, x.dtype)  # (B, H, S, S)
    for block in enc.block:
        sa, ff = block.layer[0], block.layer[1]
        x = x + _drop(model, _attend(model, sa.SelfAttention, sa.layer_norm(x),
                                     sa.layer_norm(x), add))
        x = x + _drop(model, ff.DenseReluDense(ff.layer_norm(x)))
    return _drop(model, enc.final_layer_norm(x))


def decode_positions(model, hidden: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced decoding of every position: ``labels`` (B, T, L) the SID tokens of the
    item after each position (T <= S), ``hidden`` (B, S, D) from ``causal_encode``. Returns
    (logits (B, T, L, V), decoder states (B, T, L, D) before the output layer)."""
    dec = model.get_decoder()
    batch, n_pos, n_lev = labels.shape
    start = labels.new_full((batch, n_pos, 1), DECODER_START)
    x = _drop(model, dec.embed_tokens(torch.cat([start, labels[..., :-1]], dim=-1)))
    dtype = x.dtype
    self_bias = dec.block[0].layer[0].SelfAttention.compute_bias(n_lev, n_lev, device=x.device)
    lower = torch.ones(n_lev, n_lev, dtype=torch.bool, device=x.device).tril()
    self_add = self_bias.to(dtype) + _mask_add(lower, dtype)  # (1, H, L, L)
    # query row t (its L tokens) may read encoder positions 0..t that are real
    length = hidden.shape[1]
    upto = torch.arange(length, device=x.device)[None, :] <= torch.arange(
        n_pos, device=x.device)[:, None]  # (T, S)
    upto = upto.repeat_interleave(n_lev, dim=0)  # (T*L, S)
    allowed = upto[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, T*L, S)
    cross_add = _mask_add(allowed, dtype)
    x = x.view(batch, n_pos * n_lev, -1)
    for block in dec.block:
        sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
        h = sa.layer_norm(x).view(batch, n_pos, n_lev, -1)
        x = x + _drop(model, _attend(model, sa.SelfAttention, h, h, self_add[:, None]
                                     ).reshape_as(x))
        x = x + _drop(model, _attend(model, ca.EncDecAttention, ca.layer_norm(x), hidden,
                                     cross_add))
        x = x + _drop(model, ff.DenseReluDense(ff.layer_norm(x)))
    states = _drop(model, dec.final_layer_norm(x))
    scale = model.config.d_model ** -0.5 if _scales_outputs(model) else 1.0
    logits = model.lm_head(states * scale)
    return logits.view(batch, n_pos, n_lev, -1), states.view(batch, n_pos, n_lev, -1)


def _scales_outputs(model) -> bool:
    return bool(getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings))
