"""Disk cache of Stage A answers: one append-only JSONL file per backend and model.

Each line is ``{"k": prompt key, "o": outcome}``; a batch is appended and fsynced once judged,
so a killed judge loses at most the batch in flight and a restart re-judges nothing else.
A torn last line (the kill happened mid-write) is skipped and counted. Failed requests are not
cached, so a later run tries them again; unreadable answers are cached as unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .prompts import FAILED, Outcome


def cache_file(cache_dir: Path, backend_name: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in backend_name)[:60]
    digest = hashlib.sha256(backend_name.encode("utf-8")).hexdigest()[:12]
    return Path(cache_dir) / f"{slug}-{digest}.jsonl"


class AnswerCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.answers: dict[str, Outcome] = {}
        self.torn_lines = 0
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    self.answers[row["k"]] = Outcome.from_json(row["o"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn_lines += 1

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def __len__(self) -> int:
        return len(self.answers)

    def get(self, key: str) -> Outcome | None:
        return self.answers.get(key)

    def add(self, items: Iterable[tuple[str, Outcome]]) -> int:
        """Append the non-failed answers; returns how many were written."""
        rows = [(k, o) for k, o in items if o.status != FAILED]
        if not rows:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"k": k, "o": o.to_json()}, separators=(",", ":")) + "\n"
                       for k, o in rows)
        # a torn line left by a kill must not glue onto the next record
        lead = "\n" if self._ends_mid_line() else ""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(lead + text)
            f.flush()
            os.fsync(f.fileno())
        self.answers.update(rows)
        return len(rows)

    def _ends_mid_line(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
