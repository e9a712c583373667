"""Names of a run's models: what `--model` accepts in `eval`, `recommend` and `serve`, and the
A2PO step folder a `--tag` names. Pure string rules; loading a model by its name is
``models.py``'s."""

from __future__ import annotations

import re

from .errors import ConfigError

MODELS = ("sft", "a2po", "sasrec", "popular")
SCORINGS = ("generator", "hybrid", "ranker")  # a generator's scoring modes
MODEL_HELP = ("sft, a2po, a2po-TAG (from train --a2po --tag TAG), sasrec or popular; a "
              "generator may name its scoring: sft@generator, sft@hybrid, sft@ranker (fused "
              "with the run's SASRec)")
# ``@ranker``: the share w of the run's SASRec in the fused score (1 - w) * log p_gen + w *
# log p_SASRec is chosen on validation users when the model is loaded; ties go to the weight
# nearest this one (docs/results.md, "The generator fused with the run's SASRec": best or
# within 0.0004 of the best on both datasets' validation users)
RANKER_WEIGHT = 0.7
# how a generator's top items are found (generator/decode.py)
DECODE_MODES = ("auto", "beam", "exhaustive")
# `auto` decodes exhaustively up to this catalogue size (docs/results.md, "Exact
# whole-catalogue scoring": the measured cost of exhaustive against beam 20)
AUTO_EXHAUSTIVE_ITEMS = 500
DECODE_HELP = (f"Generator decoding: beam (trie-constrained beam search of --num-beams), "
               f"exhaustive (every catalogue item scored by its full SID path: the exact top "
               f"k) or auto (exhaustive up to {AUTO_EXHAUSTIVE_ITEMS:,} items, beam above).")
def resolve_decode(mode: str, n_items: int) -> str:
    """``auto`` -> exhaustive or beam by the catalogue size; a known mode stays itself."""
    if mode not in DECODE_MODES:
        raise ConfigError(f"decode mode {mode!r} is not known; use one of "
                          f"{', '.join(DECODE_MODES)}")
    if mode == "auto":
        return "exhaustive" if n_items <= AUTO_EXHAUSTIVE_ITEMS else "beam"
    return mode


_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def split_model(name: str) -> tuple[str, str | None]:
    """``sft@hybrid`` -> ("sft", "hybrid"); a name without ``@`` scores as its model was
    trained to (None)."""
    base, at, score = name.partition("@")
    return base, (score if at else None)


def is_generator(base: str) -> bool:
    return base in ("sft", "a2po") or (base.startswith("a2po-") and len(base) > len("a2po-"))


def known_model(name: str) -> bool:
    """The built-in models, A2PO runs saved under a tag (``a2po-<tag>``), and a generator with
    its scoring named (``sft@generator``: the pure generator of a hybrid model)."""
    base, score = split_model(name)
    if score is not None:
        return is_generator(base) and score in SCORINGS
    return base in MODELS or is_generator(base)


def check_model(name: str) -> None:
    if not isinstance(name, str) or not known_model(name):
        raise ConfigError(f"--model {name!r} is not known; use {MODEL_HELP}")


def model_step(name: str) -> str | None:
    """The run folder a model is loaded from (None: popular is fit from the data)."""
    base, _ = split_model(name)
    return None if base == "popular" else base


def a2po_step(tag: str | None) -> str:
    """RUN/a2po, or RUN/a2po-TAG for a tag of letters, digits, '_', '.' and '-'."""
    if tag is None:
        return "a2po"
    if not isinstance(tag, str) or not _TAG.fullmatch(tag) or len(tag) > 64:
        raise ConfigError(f"--tag {tag!r} must be letters, digits, '_', '.' or '-' (starting "
                          "with a letter or digit, at most 64), e.g. --tag biz")
    return f"a2po-{tag}"
