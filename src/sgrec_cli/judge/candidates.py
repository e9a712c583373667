"""Who is judged, and on which candidates.

The judge context of a user is their *last training example* (history s_1..s_{n-3} truncated
to max_history, next item s_{n-2}): the validation and test targets s_{n-1}, s_n are never
seen. Candidates for that context come from the SFT generator's beams (the items RL samples),
from FAISS nearest neighbours of the user's recent interest, or from a user-supplied JSONL file
(``{"user": "<source user id>", "items": ["<source item id>", ...]}`` per line). History items
are never candidates. The item actually chosen next is always judged as well: it is the
positive side of the pairwise feedback that fits the aggregator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.io import iter_lines
from ..errors import BadInputError
from ..sampling import seeded_subset

if TYPE_CHECKING:
    from ..data.store import PreparedData


@dataclass
class Contexts:
    users: list[int]  # user indices
    user_ids: list[str]  # source user ids
    histories: list[list[int]]
    targets: list[int]  # the next training item (positive of the pairwise feedback)


def judge_contexts(data: PreparedData, max_users: int = 0, seed: int = 0) -> Contexts:
    """The last training example of every user (or of ``max_users`` users drawn with ``seed``),
    in user order."""
    last: dict[int, tuple[list[int], int]] = {}
    for e in data.training_split("judge"):
        last[e.user] = (list(e.history), e.target)
    users = seeded_subset(sorted(last), max_users, seed)
    ids = [str(r["user"]) for r in _sequences(data)]
    return Contexts(users, [ids[u] for u in users], [last[u][0] for u in users],
                    [last[u][1] for u in users])


def _sequences(data: PreparedData) -> list[dict]:
    from ..artifacts import read_jsonl

    return read_jsonl(data.folder / "sequences.jsonl")


def nn_candidates(emb: np.ndarray, ctx: Contexts, k: int) -> list[list[int]]:
    """The k unseen items nearest (inner product, FAISS) to the user's recency-weighted
    interest vector (see embedding.interest_vectors)."""
    import faiss

    from .embedding import interest_vectors

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    queries = np.stack([interest_vectors(emb[h])[1] for h in ctx.histories]).astype(np.float32)
    longest = max(len(h) for h in ctx.histories)
    _, found = index.search(queries, min(k + longest, emb.shape[0]))
    out = []
    for row, hist in zip(found, ctx.histories, strict=True):
        seen = set(hist)
        out.append([int(i) for i in row if i >= 0 and int(i) not in seen][:k])
    return out


@dataclass
class FileReport:
    lines: int = 0
    unknown_users: int = 0
    unknown_items: int = 0
    history_items: int = 0
    examples: list[str] = field(default_factory=list)  # the first few problems, file:line

    def note(self, where: str, what: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {what}")


def file_candidates(path: Path, data: PreparedData,
                    ctx: Contexts) -> tuple[list[list[int]], FileReport]:
    """Candidates read from JSONL. Unknown users and items are skipped and counted (the report
    names the first few by file:line); a line that is not such a JSON object is an error."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("candidate file not found", path)
    id_to_index = {str(it["id"]): int(it["index"]) for it in data.items()}
    pos = {u: i for i, u in enumerate(ctx.user_ids)}
    cands: list[list[int]] = [[] for _ in ctx.users]
    report = FileReport()
    for n, line in iter_lines(path):  # invalid UTF-8 is one error naming its line
        report.lines += 1
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"not JSON ({e.msg})", where) from None
        if (not isinstance(row, dict) or "user" not in row
                or not isinstance(row.get("items"), list)):
            raise BadInputError('expected {"user": ..., "items": [...]}', where)
        user = str(row["user"])
        if user not in pos:
            report.unknown_users += 1
            report.note(where, f"user {user!r} is not a judged training user")
            continue
        u = pos[user]
        seen = set(ctx.histories[u])
        for item in row["items"]:
            idx = id_to_index.get(str(item))
            if idx is None:
                report.unknown_items += 1
                report.note(where, f"item {item!r} is not in the catalogue")
            elif idx in seen:
                report.history_items += 1
            elif idx not in cands[u]:
                cands[u].append(idx)
    return cands, report


def with_targets(cands: Sequence[Sequence[int]],
                 targets: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten to pairs: (context position (P,), item (P,), is_target (P,) bool); each user's
    next item is added when the candidates lack it."""
    ctx_pos, items, is_target = [], [], []
    for u, (row, t) in enumerate(zip(cands, targets, strict=True)):
        row = list(row) if t in row else [*row, t]
        ctx_pos += [u] * len(row)
        items += row
        is_target += [i == t for i in row]
    return (np.asarray(ctx_pos, dtype=np.int64), np.asarray(items, dtype=np.int64),
            np.asarray(is_target, dtype=bool))
