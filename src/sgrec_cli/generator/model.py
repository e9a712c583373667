"""The SID generator: a small T5 encoder-decoder built from scratch (no pretrained weights).

Input modes (``GeneratorConfig.input``):

- ``tokens`` (TIGER): the encoder reads the SID tokens of each history item, one position per
  token, followed by EOS.
- ``items``: one encoder position per history item. Its vector is the sum of the embeddings
  of the item's L SID tokens (the table the decoder and the output layer share), plus, with
  ``text``, the item's frozen text embedding projected to d_model, and with ``ids`` a learned
  free embedding of the item (zero at the start). Positions (T5's relative
  attention buckets) then count items, and the encoder sequence is L + 1 times shorter.
  Encoder ``input_ids`` are item index + 1, 0 being padding (``SidVocab.encode_history``).

Scoring (``GeneratorConfig.score``): with ``hybrid`` the model also learns a dense item head.
The user's vector is the decoder state from which the first SID code is predicted (one
decoder step from the start token), through a linear map; an item's vector is the same pooled
SID (+ text, + id) vector the encoder reads; ``log p_dense`` is a softmax of their dot products
(divided by sqrt(d_model)) over the whole catalogue,
trained with cross-entropy on the next item next to the SID loss (LIGER, arXiv 2411.18814).

Saved as ``model.safetensors`` (weights, never pickle: with item inputs or the dense head also
the item -> SID token table and the frozen text embeddings) plus ``generator.json`` (the
architecture, the modes and the SID codebook sizes), which is all ``load_generator`` needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from ..errors import ArtifactError, ConfigError
from .causal import causal_encode, decode_positions
from .config import GeneratorConfig
from .tokens import DECODER_START, EOS, PAD, SidVocab

__all__ = ["SidGenerator", "build_model", "save_generator", "load_generator"]

WEIGHTS = "model.safetensors"
CONFIG = "generator.json"
FORMAT_VERSION = 1
# settings a generator.json written before they existed leaves out: the value it was built with
# (the default of the time, since changed)
LEGACY_DEFAULTS = {"input": "tokens", "causal": False}
# distinct recency embeddings (GeneratorConfig.recency): items further back share the last one
RECENCY_SLOTS = 64


def _needs_items(cfg: GeneratorConfig) -> bool:
    """Whether the model holds the item -> SID token table (to pool item vectors)."""
    return cfg.input == "items" or cfg.score == "hybrid"


class SidGenerator(T5ForConditionalGeneration):
    """T5 plus the item-level parts of ``GeneratorConfig``'s modes.

    ``model(input_ids=..., attention_mask=..., labels=..., items=...)`` works in every mode:
    ``input_ids`` are embedded by ``embed_inputs``; ``items`` (B,) next items add the dense
    head's cross-entropy to ``loss`` (and set ``dense_loss``). With ``position_labels``
    (B, S, L), a causal model returns every position's teacher-forced (logits, states)
    (``causal.decode_positions``) instead. ``encode`` gives the encoder
    states that beam search and A2PO start from.
    """

    def __init__(self, t5: T5Config, cfg: GeneratorConfig, n_items: int = 0,
                 n_levels: int = 0, text_dim: int = 0):
        super().__init__(t5)
        self.gen = cfg
        self.per_item = cfg.input == "items"
        self.hybrid = cfg.score == "hybrid"
        if _needs_items(cfg):
            self.register_buffer("item_tokens", torch.zeros(n_items, n_levels, dtype=torch.long))
        if cfg.text:
            self.register_buffer("item_text", torch.zeros(n_items, text_dim))
            self.text_proj = nn.Linear(text_dim, cfg.d_model, bias=False)
        if cfg.ids:
            self.item_emb = nn.Embedding(n_items, cfg.d_model)
        if cfg.recency:
            self.recency_emb = nn.Embedding(RECENCY_SLOTS, cfg.d_model)
        if self.hybrid:
            self.dense_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def init_extras(self) -> None:
        """(Re-)initialise the parts T5 does not have (build_model calls it last)."""
        if self.gen.text:
            # unit-norm text in, entries of the code embeddings' scale (std 1) out
            nn.init.normal_(self.text_proj.weight, std=1.0)
        if self.gen.ids:
            # zero: the model starts as the SID (+ text) model and learns per-item residuals
            nn.init.zeros_(self.item_emb.weight)
        if self.gen.recency:  # zero: the model starts as the one without recency
            nn.init.zeros_(self.recency_emb.weight)
        if self.hybrid:
            self.dense_proj.reset_parameters()

    @property
    def n_items(self) -> int:
        return int(self.item_tokens.shape[0]) if hasattr(self, "item_tokens") else 0

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(..., D) pooled vectors of item indices ``items`` (all items when None)."""
        tokens = self.item_tokens if items is None else self.item_tokens[items]
        vec = self.shared(tokens).sum(-2)  # (..., D)
        if self.gen.text:
            text = self.item_text if items is None else self.item_text[items]
            vec = vec + self.text_proj(text)
        if self.gen.ids:
            vec = vec + (self.item_emb.weight if items is None else self.item_emb(items))
        return vec

    def embed_inputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, S) encoder ids -> (B, S, D) input vectors (see the module doc)."""
        if not self.per_item:
            return self.shared(input_ids)
        real = input_ids > 0
        vec = self.item_vectors((input_ids - 1).clamp(min=0))
        if self.gen.recency:  # rows are right-padded: position p of n items is n - 1 - p back
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            back = real.sum(1, keepdim=True) - 1 - pos
            vec = vec + self.recency_emb(back.clamp(0, RECENCY_SLOTS - 1))
        return vec * real[..., None].to(vec.dtype)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, S, D) encoder states (``causal``: position t reads history items 0..t only)."""
        if self.gen.causal:
            return causal_encode(self, input_ids, attention_mask)
        return self.get_encoder()(inputs_embeds=self.embed_inputs(input_ids),
                                  attention_mask=attention_mask)[0]

    def user_vectors(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, D) dense-head user vectors from encoder states (B, S, D)."""
        if not self.hybrid:
            raise ValueError("this generator has no dense head (trained with score=generator)")
        start = torch.full((hidden.shape[0], 1), DECODER_START, dtype=torch.long,
                           device=hidden.device)
        h0 = self.get_decoder()(input_ids=start, encoder_hidden_states=hidden,
                                encoder_attention_mask=mask, use_cache=False)[0][:, 0]
        return self.dense_proj(h0)

    def _dense(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N) log-softmax over the catalogue of ``users . v_i / sqrt(d_model)`` (scaled
        like attention, so that the logits start near unit scale rather than at the ~13 the
        raw dot products of these vectors have)."""
        logits = users @ self.item_vectors().T
        return torch.log_softmax(logits.float() * self.gen.d_model ** -0.5, dim=-1)

    def dense_log_probs(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) log p_dense(item | history) over the whole catalogue."""
        return self._dense(self.user_vectors(hidden, mask))

    def forward(self, input_ids=None, attention_mask=None, *, items=None,
                position_labels=None, **kwargs):
        if position_labels is not None:  # whole-sequence training (causal.decode_positions)
            hidden = self.encode(input_ids, attention_mask)
            return decode_positions(self, hidden, attention_mask, position_labels)
        if input_ids is not None and self.gen.causal and kwargs.get("encoder_outputs") is None:
            kwargs["encoder_outputs"] = (self.encode(input_ids, attention_mask),)
        elif input_ids is not None:
            kwargs["inputs_embeds"] = self.embed_inputs(input_ids)
        dense = items is not None and self.hybrid
        # the decoder's first position (its input is the start token the labels are shifted
        # behind; attention is causal) is user_vectors' one-step state: read it from this pass
        # instead of a second one
        reuse = dense and "labels" in kwargs and kwargs.get("decoder_input_ids") is None
        if reuse:
            kwargs["output_hidden_states"] = True
        out = super().forward(attention_mask=attention_mask, **kwargs)
        if dense:
            if reuse:
                users = self.dense_proj(out.decoder_hidden_states[-1][:, 0])
            else:
                users = self.user_vectors(out.encoder_last_hidden_state, attention_mask)
            lp = self._dense(users)
            loss = nn.functional.nll_loss(lp, items.to(lp.device))
            out.dense_loss = loss
            out.loss = out.loss + loss if out.loss is not None else loss
        return out


def _t5_config(cfg: GeneratorConfig, vocab: SidVocab) -> T5Config:
    return T5Config(
        vocab_size=vocab.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_model // cfg.num_heads,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        dropout_rate=cfg.dropout,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj="relu",
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=DECODER_START,
        tie_word_embeddings=True,
        use_cache=True,
        # kept on the config so save_generator can record the vocabulary with the weights
        sid_codebook_sizes=list(vocab.codebook_sizes),
    )


def build_model(cfg: GeneratorConfig, vocab: SidVocab, *, codes: np.ndarray | None = None,
                text: np.ndarray | None = None) -> SidGenerator:
    """A randomly initialised generator (seed torch beforehand for reproducibility).

    ``codes`` (N, L) item SIDs are needed for item inputs or the dense head, ``text`` (N, E)
    item text embeddings for ``cfg.text``; both are stored in the model as frozen buffers.
    """
    cfg.validate()
    n_items = n_levels = text_dim = 0
    if _needs_items(cfg):
        if codes is None:
            raise ConfigError(f"input={cfg.input} score={cfg.score} needs the items' SIDs")
        tokens = vocab.code_tokens(np.asarray(codes))
        n_items, n_levels = tokens.shape
    if cfg.text:
        if text is None or len(text) != n_items:
            raise ConfigError(f"text features need one text embedding per item ({n_items})")
        text_dim = int(np.asarray(text).shape[1])
    t5 = _t5_config(cfg, vocab)
    rng = torch.random.get_rng_state()
    model = SidGenerator(t5, cfg, n_items, n_levels, text_dim)
    # The T5 part is drawn exactly as a plain T5ForConditionalGeneration draws it (which
    # initialises the shared embedding with other random numbers than a subclass does), so
    # a seed gives the same model, and the same dropout stream after it, as before the modes.
    torch.random.set_rng_state(rng)
    model.load_state_dict(T5ForConditionalGeneration(t5).state_dict(), strict=False)
    model.init_extras()
    with torch.no_grad():
        if n_items:
            model.item_tokens.copy_(torch.from_numpy(tokens))
        if cfg.text:
            model.item_text.copy_(torch.as_tensor(np.asarray(text), dtype=torch.float32))
    return model


def save_generator(model: SidGenerator, cfg: GeneratorConfig, folder: Path) -> None:
    """Write ``generator.json`` and ``model.safetensors`` into ``folder``."""
    sizes = getattr(model.config, "sid_codebook_sizes", None)
    if not sizes:
        raise ValueError("model was not built by build_model: no sid_codebook_sizes on its config")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # save_model drops the tied copies of the shared embedding that save_file would refuse
    save_model(model, str(folder / WEIGHTS))
    meta = {"format_version": FORMAT_VERSION, "generator": asdict(cfg), "codebook_sizes": sizes,
            "n_items": model.n_items,
            "text_dim": int(model.item_text.shape[1]) if cfg.text else 0}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_generator_config(folder: Path) -> tuple[GeneratorConfig, dict]:
    """(config, generator.json) of a saved generator; one-line ArtifactError when it is not
    one this version can rebuild (another format, unknown fields or modes)."""
    path = Path(folder) / CONFIG
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read the generator's config ({e})") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ArtifactError(f"{path}: unsupported format {version!r}")
    known = {f.name for f in fields(GeneratorConfig)}
    given = meta.get("generator")
    if not isinstance(given, dict):
        raise ArtifactError(f"{path}: no 'generator' settings")
    unknown = set(given) - known
    if unknown:
        raise ArtifactError(f"{path}: unknown generator fields {sorted(unknown)}")
    cfg = GeneratorConfig(**{**LEGACY_DEFAULTS, **given})
    try:
        cfg.validate()
    except ConfigError as e:
        raise ArtifactError(f"{path}: {e}") from e
    return cfg, meta


def load_generator(folder: Path, device: torch.device | str = "cpu"
                   ) -> tuple[SidGenerator, GeneratorConfig, SidVocab]:
    """Rebuild a saved generator; returns ``(model in eval mode, cfg, vocab)``."""
    folder = Path(folder)
    cfg, meta = read_generator_config(folder)
    vocab = SidVocab(meta["codebook_sizes"])
    n_items = int(meta.get("n_items", 0))
    if _needs_items(cfg) and n_items < 1:
        raise ArtifactError(f"{folder / CONFIG}: input={cfg.input} score={cfg.score} but no "
                            "item table (n_items)")
    model = SidGenerator(_t5_config(cfg, vocab), cfg, n_items, vocab.num_levels,
                         int(meta.get("text_dim", 0)))
    try:
        load_model(model, str(folder / WEIGHTS), strict=True, device=str(device))
    except RuntimeError as e:  # weights of another architecture or mode
        first = str(e).strip().splitlines()[-1].strip()
        raise ArtifactError(f"{folder / WEIGHTS}: does not match {CONFIG} ({first})") from e
    return model.to(device).eval(), cfg, vocab
