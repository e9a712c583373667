"""P5 / TIGER format: ``user_sequence.txt`` (``user item item ...`` per line, time order).

Item text is optional: ``--item-text FILE`` or, in the source folder, the first of
``item_plain_text.txt``, ``item_titles.txt`` or ``item_generative_indexing_phase_0.txt``;
each line is ``item_id text...`` (split on the first whitespace), used as the item title.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BadInputError, at
from ..io import iter_lines, require_file
from ..raw import RawDataset, RawItem, RawSequence

NAME = "p5"
SEQUENCE_FILE = "user_sequence.txt"
TEXT_FILES = ("item_plain_text.txt", "item_titles.txt", "item_generative_indexing_phase_0.txt")


def _sequence_file(source: Path) -> Path | None:
    if source.is_file() and source.name.endswith(".txt"):
        return source
    if source.is_dir() and (source / SEQUENCE_FILE).is_file():
        return source / SEQUENCE_FILE
    return None


def detect(source: Path) -> bool:
    return source.is_dir() and (source / SEQUENCE_FILE).is_file()


def read(source: Path, cfg) -> RawDataset:
    seq_path = _sequence_file(source)
    if seq_path is None:
        raise BadInputError(f"no {SEQUENCE_FILE} (P5 / TIGER format)", source)
    sequences = []
    for n, line in iter_lines(seq_path):
        parts = line.split()
        where = at(seq_path, n)
        if len(parts) < 2:
            raise BadInputError(f"user {parts[0]!r} has an empty sequence", where)
        sequences.append(RawSequence(parts[0], parts[1:], where))

    text_path = _text_file(source, cfg)
    items = None
    if text_path is not None:
        items = {}
        for n, line in iter_lines(text_path):
            parts = line.strip().split(maxsplit=1)
            if parts[0] in items:
                raise BadInputError(f"duplicate item id {parts[0]!r}", at(text_path, n))
            items[parts[0]] = RawItem(title=parts[1].strip() if len(parts) > 1 else "")
    name = source.name if source.is_dir() else source.parent.name
    files = [seq_path] + ([text_path] if text_path else [])
    return RawDataset(name=name, format=NAME, sequences=sequences, items=items, files=files,
                      items_where=str(text_path or ""))


def _text_file(source: Path, cfg) -> Path | None:
    if getattr(cfg, "item_text", None):
        return require_file(Path(cfg.item_text), "item text file given by --item-text")
    if source.is_dir():
        for name in TEXT_FILES:
            if (source / name).is_file():
                return source / name
    return None
