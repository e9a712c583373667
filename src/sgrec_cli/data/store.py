"""The canonical dataset folder ``RUN/data/`` on disk, and loading it back for later steps.

Files: ``items.jsonl`` (one item per line, in index order), ``sequences.jsonl`` (one user per
line: index, source id, item indices in time order), ``train.jsonl`` / ``valid.jsonl`` /
``test.jsonl`` (``{"user", "history", "target"}`` with indices), ``stats.json``, ``manifest.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts import (
    Manifest,
    atomic_write_json,
    read_jsonl,
    sha256_file,
    write_jsonl,
)
from ..errors import ArtifactError
from .canonical import Dataset
from .split import Example

STEP = "data"
SPLITS = ("train", "valid", "test")


def write_dataset_files(folder: Path, ds: Dataset, splits: dict[str, list[Example]],
                        stats: dict) -> str:
    """Write the canonical files into ``folder``; return the dataset fingerprint.

    The fingerprint hashes items and sequences only, so it names the data, not the split config.
    """
    write_jsonl(folder / "items.jsonl", ds.items)
    write_jsonl(folder / "sequences.jsonl",
                ({"index": u, "user": user, "items": seq}
                 for u, (user, seq) in enumerate(zip(ds.users, ds.sequences, strict=True))))
    for name in SPLITS:
        write_jsonl(folder / f"{name}.jsonl",
                    ({"user": e.user, "history": list(e.history), "target": e.target}
                     for e in splits[name]))
    atomic_write_json(folder / "stats.json", stats)
    return fingerprint(folder)


def fingerprint(folder: Path) -> str:
    return sha256_file(folder / "items.jsonl")[:32] + sha256_file(folder / "sequences.jsonl")[:32]


@dataclass
class PreparedData:
    """A loaded ``RUN/data`` folder."""

    manifest: Manifest
    folder: Path

    @property
    def fingerprint(self) -> str:
        return self.manifest.dataset["fingerprint"]

    @property
    def max_history(self) -> int:
        """History items kept per example (`sgrec prepare --max-history`): every later step
        reads it from here, so the data and the models never disagree."""
        return int(self.manifest.config.get("max_history", 20))

    def items(self) -> list[dict]:
        return read_jsonl(self.folder / "items.jsonl")

    def sequences(self) -> list[list[int]]:
        return [r["items"] for r in read_jsonl(self.folder / "sequences.jsonl")]

    def training_split(self, command: str) -> list[Example]:
        """The training examples, refused in one line when there are none (every user has only
        a test, a validation and one history item): ``command`` cannot run on this data."""
        train = self.split("train")
        if not train:
            raise ArtifactError(f"`sgrec {command}` needs training examples and this data has "
                                "none: every user has 3 interactions (a test, a validation "
                                "and one history item); prepare data with users of 4 or more",
                                self.folder)
        return train

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise ArtifactError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return [Example(r["user"], tuple(r["history"]), r["target"])
                for r in read_jsonl(self.folder / f"{name}.jsonl")]

