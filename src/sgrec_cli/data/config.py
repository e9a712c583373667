"""`sgrec prepare`'s config: raw dataset -> RUN/data (canonical items, sequences, leave-one-out
split). Settings that belong to the data (the history length) are recorded in RUN/data's
manifest and read from there by every later step."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import StepConfig, option
from ..validate import check_choice, check_ints, check_num, is_int, require
from .formats import FORMAT_CHOICES


@dataclass
class PrepareConfig(StepConfig):
    """`sgrec prepare` (docs/design.md §3)."""

    source: str = option(help="Raw dataset folder or file.", cli=False)
    format: str = option("auto", "auto (detected from the file names), or one of: "
                         + ", ".join(c for c in FORMAT_CHOICES if c != "auto") + ".",
                         short="-f")
    max_history: int = option(20, "History length kept per example; every later step uses "
                              "it.")
    min_seq_len: int = option(3, "Drop users with fewer interactions (3: one test, one "
                              "validation and one training item).")
    kcore: int = option(5, "k-core filter for Amazon review dumps (users and items with at "
                        "least k interactions).")
    min_rating: float | None = option(None, "Keep interactions rated at least this (Amazon "
                                      "dumps, MovieLens, CSV/JSONL) [default: keep all].")
    item_text: str | None = option(None, "P5 format: item text file, 'item_id text' per line "
                                   "[default: found beside the sequences, e.g. "
                                   "item_titles.txt].")
    items: str | None = option(None, "CSV/JSONL format: item metadata file [default: "
                               "items.csv|jsonl beside the interactions].")
    name: str | None = option(None, "Dataset name for the manifest [default: from the "
                              "source].")

    def validate(self) -> None:
        require(isinstance(self.source, str) and self.source != "",
                "give the raw dataset: sgrec prepare SOURCE (or source = \"...\" in --config)")
        check_choice("format", self.format, FORMAT_CHOICES)
        check_ints(self, ("max_history",), 1)
        require(is_int(self.min_seq_len) and self.min_seq_len >= 3,
                f"--min-seq-len {self.min_seq_len!r} must be >= 3: leave-one-out needs a test, "
                "a validation and at least one training item per user")
        check_ints(self, ("kcore",), 0)
        if self.min_rating is not None:
            check_num("min_rating", self.min_rating)
