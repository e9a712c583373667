"""Format readers, each a module with ``detect(source) -> bool`` and
``read(source, cfg) -> RawDataset``, and the one registry of them.

A new format is one module here plus one entry in ``READERS``; `sgrec prepare --format`, its
auto-detection and its error messages all read the registry.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# format name -> (reader module, the kind it reads: for a module that reads several), in
# detection order: the more specific layouts first
READERS = {
    "letter": ("letter", None),
    "recbole": ("recbole", None),
    "p5": ("p5", None),
    "amazon": ("amazon", None),
    "movielens": ("movielens", None),
    "csv": ("generic", "csv"),
    "jsonl": ("generic", "jsonl"),
}
FORMAT_CHOICES = ("auto", *READERS)


def reader(name: str) -> ModuleType:
    """The reader module of format ``name`` (a key of READERS)."""
    return importlib.import_module(f".{READERS[name][0]}", __name__)


def detect(source) -> str | None:
    """The first format whose reader recognises ``source``, or None."""
    for name, (_, kind) in READERS.items():
        module = reader(name)
        if module.detect(source) if kind is None else module.detect(source, kind):
            return name
    return None
