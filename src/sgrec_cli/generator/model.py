"""The SID generator: a small T5 encoder-decoder built from scratch (no pretrained weights).

Saved as ``model.safetensors`` (weights only, never pickle) plus ``generator.json`` (the
architecture and the SID codebook sizes), which is all ``load_generator`` needs to rebuild it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from transformers import T5Config, T5ForConditionalGeneration

from ..config import GeneratorConfig
from .tokens import DECODER_START, EOS, PAD, SidVocab

__all__ = ["GeneratorConfig", "build_model", "save_generator", "load_generator"]

WEIGHTS = "model.safetensors"
CONFIG = "generator.json"
FORMAT_VERSION = 1


def build_model(cfg: GeneratorConfig, vocab: SidVocab) -> T5ForConditionalGeneration:
    """A randomly initialised T5 (seed torch beforehand for reproducibility)."""
    if cfg.d_model % cfg.num_heads:
        raise ValueError(f"d_model {cfg.d_model} is not divisible by num_heads {cfg.num_heads}")
    t5 = T5Config(
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
    return T5ForConditionalGeneration(t5)


def save_generator(model: T5ForConditionalGeneration, cfg: GeneratorConfig, folder: Path) -> None:
    """Write ``generator.json`` and ``model.safetensors`` into ``folder``."""
    sizes = getattr(model.config, "sid_codebook_sizes", None)
    if not sizes:
        raise ValueError("model was not built by build_model: no sid_codebook_sizes on its config")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # save_model drops the tied copies of the shared embedding that save_file would refuse
    save_model(model, str(folder / WEIGHTS))
    meta = {"format_version": FORMAT_VERSION, "generator": asdict(cfg), "codebook_sizes": sizes}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_generator(
    folder: Path, device: torch.device | str = "cpu"
) -> tuple[T5ForConditionalGeneration, GeneratorConfig, SidVocab]:
    """Rebuild a saved generator; returns ``(model in eval mode, cfg, vocab)``."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / CONFIG}: unsupported format {meta.get('format_version')!r}")
    known = {f.name for f in fields(GeneratorConfig)}
    unknown = set(meta["generator"]) - known
    if unknown:
        raise ValueError(f"{folder / CONFIG}: unknown generator fields {sorted(unknown)}")
    cfg = GeneratorConfig(**meta["generator"])
    vocab = SidVocab(meta["codebook_sizes"])
    model = build_model(cfg, vocab)
    load_model(model, str(folder / WEIGHTS), strict=True, device=str(device))
    return model.to(device).eval(), cfg, vocab
