"""A run's trained generators read back: RUN/sft or RUN/a2po[-TAG] (``best/``), checked against
the run's data and SIDs, ready for decoding (``decode.py``)."""

from __future__ import annotations

from ..rundir import Run
from .decode import LoadedGenerator


def load_model(run: Run, step: str, device: str):
    """(model in eval mode, its GeneratorConfig, its SidVocab) of RUN/<step>/best, refused
    unless that step was built from the run's current data and SIDs."""
    from .model import load_generator

    m = run.step(step, needs=("data", "sids"))
    return load_generator(m.path.parent / "best", device=device)


def load_generator_step(run: Run, step: str = "sft", device: str = "auto") -> LoadedGenerator:
    """RUN/<step>/best ready for decoding, checked against the run's data and SIDs."""
    from ..device import resolve_device
    from .trie import SidTrie

    model, _cfg, vocab = load_model(run, step, resolve_device(device))
    codes = run.sids.codes
    return LoadedGenerator(model, vocab, SidTrie.from_codes(codes, vocab.codebook_sizes), codes,
                           run.data.max_history)
