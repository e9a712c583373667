"""What every format reader returns: user sequences and item text, before canonicalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import at


@dataclass
class RawItem:
    """Item text fields kept from the source; every field is optional."""

    title: str = ""
    brand: str = ""
    categories: list[str] = field(default_factory=list)
    description: str = ""
    value: float | None = None  # price / bid, when the source carries one


@dataclass
class RawSequence:
    """One user's items in chronological order; ``where`` locates it for error messages."""

    user: str
    items: list[str]
    where: str


@dataclass
class RawDataset:
    """Output of a format reader.

    ``items`` is None when the source has no item file (then every item gets empty text);
    otherwise every item named in a sequence must be in it. ``items_where`` names the item file.
    """

    name: str
    format: str
    sequences: list[RawSequence]
    items: dict[str, RawItem] | None
    files: list[Path]
    items_where: str = ""
    notes: dict[str, int] = field(default_factory=dict)  # counts of what the reader dropped
    warnings: list[str] = field(default_factory=list)  # what it could not read, in words


def timed_sequences(events: dict[str, list[tuple[float, int, str]]],
                    first_line: dict[str, int], path: Path) -> list[RawSequence]:
    """Users' (time, line, item) events -> their sequences: sorted by time, file order on ties
    (all times 0: file order), users in order of first appearance, users without events
    dropped; each located at its first line of ``path``."""
    sequences = []
    for user, seq in events.items():
        if seq:
            seq.sort(key=lambda e: (e[0], e[1]))
            sequences.append(RawSequence(user, [e[2] for e in seq], at(path, first_line[user])))
    return sequences
