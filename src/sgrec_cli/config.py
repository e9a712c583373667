"""One typed, validated config dataclass per step, shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

FORMATS = ("auto", "letter", "p5", "amazon", "movielens", "csv", "jsonl")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass
class PrepareConfig:
    """`sgrec prepare`: raw dataset -> RUN/data (canonical items, sequences, leave-one-out split).

    source       folder or file of the raw dataset
    format       one of FORMATS; ``auto`` detects it from the file names
    max_history  most recent items kept as history in each example (DESIGN §3, default 20)
    min_seq_len  users with fewer interactions are dropped (3 = one test, one valid, one train item)
    kcore        k-core filter for Amazon review dumps (users and items with >= k interactions)
    min_rating   keep only interactions rated at least this (Amazon dumps, MovieLens, CSV/JSONL)
    item_text    item text file for the P5 format (``item_id text`` per line)
    items        item metadata file for the csv/jsonl formats
    name         dataset name recorded in the manifest (default: from the source)
    """

    source: str
    format: str = "auto"
    max_history: int = 20
    min_seq_len: int = 3
    kcore: int = 5
    min_rating: float | None = None
    item_text: str | None = None
    items: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check(self.format in FORMATS,
               f"--format {self.format!r} is not known; use one of: {', '.join(FORMATS)}")
        _check(isinstance(self.max_history, int) and self.max_history >= 1,
               f"--max-history {self.max_history!r} must be an integer >= 1 (default 20)")
        _check(isinstance(self.min_seq_len, int) and self.min_seq_len >= 3,
               f"--min-seq-len {self.min_seq_len!r} must be >= 3: leave-one-out needs a test, "
               "a validation and at least one training item per user")
        _check(isinstance(self.kcore, int) and self.kcore >= 0,
               f"--kcore {self.kcore!r} must be an integer >= 0 (0 disables the filter)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
