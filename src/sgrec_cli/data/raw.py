"""What every format reader returns: user sequences and item text, before canonicalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
