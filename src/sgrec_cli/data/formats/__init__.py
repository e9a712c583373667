"""Format readers, each a module with ``detect(source) -> bool`` and
``read(source, cfg) -> RawDataset``, and the one registry of them.

A new format is one module here plus one entry in ``READERS``; `sgrec prepare --format`, its
auto-detection and its error messages all read the registry.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# format name -> reader module, in detection order: the more specific layouts first
READERS = {
    "letter": "letter",
    "p5": "p5",
    "amazon": "amazon",
    "movielens": "movielens",
    "csv": "generic",
    "jsonl": "generic",
}
FORMAT_CHOICES = ("auto", *READERS)


def reader(name: str) -> ModuleType:
    """The reader module of format ``name`` (a key of READERS)."""
    return importlib.import_module(f".{READERS[name]}", __name__)


def detect(source) -> str | None:
    """The first format whose reader recognises ``source``, or None."""
    tried: set[str] = set()
    for name, module in READERS.items():
        if module in tried:
            continue
        tried.add(module)
        if reader(name).detect(source):
            return name
    return None
