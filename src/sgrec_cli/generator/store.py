"""A run's trained generators read back: RUN/sft or RUN/a2po[-TAG] (``best/``), checked against
the run's data and SIDs, ready for decoding (``decode.py``)."""

from __future__ import annotations

from ..rundir import Run
from .decode import LoadedGenerator


def load_generator_step(run: Run, step: str = "sft", device: str = "auto") -> LoadedGenerator:
    """RUN/<step>/best, checked against the run's data and SIDs."""
    from ..device import resolve_device
    from .model import load_generator
    from .trie import SidTrie

    m = run.step(step, needs=("data", "sids"))
    model, _cfg, vocab = load_generator(m.path.parent / "best", device=resolve_device(device))
    codes = run.sids.codes
    return LoadedGenerator(model, vocab, SidTrie.from_codes(codes, vocab.codebook_sizes), codes,
                           run.data.max_history)
