"""`sgrec recommend`: parse who to recommend for (histories, dataset users, a file of users),
ask the model through ``inference.top_items`` and return readable records (id, title, SID,
score)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import RecommendConfig
from .data.store import PreparedData
from .errors import BadInputError
from .inference import top_items
from .rundir import Run, as_run

__all__ = ["RecommendConfig", "Request", "parse_history", "read_requests", "user_requests",
           "recommend"]


@dataclass
class Request:
    """One user to recommend for: a label and a history of source item ids, oldest first."""

    user: str | None
    history: list[str]
    where: str  # where the request came from, for error messages


def parse_history(text: str, where: str = "--history") -> Request:
    """``"A,B,C"`` -> Request(history=["A", "B", "C"]); blanks around ids are ignored."""
    ids = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not i for i in ids):
        raise BadInputError(f"history {text!r} must be item ids separated by commas, "
                            "e.g. 12,7,30", where)
    return Request(None, ids, where)


def read_requests(path: Path) -> list[Request]:
    """A file of users: JSON lines ``{"user": "u1", "history": ["12", "7"]}`` (``user``
    optional), or plain lines ``12,7,30`` (one history per line). Blank lines are skipped."""
    from .data.io import read_text, require_file

    path = require_file(Path(path), "the file of users")
    lines = read_text(path).splitlines()  # invalid UTF-8: one error naming its line
    requests = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        where = f"{path}:{n}"
        if not line:
            continue
        if not line.startswith("{"):
            requests.append(parse_history(line, where))
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"not valid JSON ({e.msg})", where) from None
        hist = rec.get("history")
        if not isinstance(hist, list) or not hist or not all(
                isinstance(i, (str, int)) and not isinstance(i, bool) for i in hist):
            raise BadInputError('"history" must be a non-empty list of item ids', where)
        user = rec.get("user")
        requests.append(Request(None if user is None else str(user), [str(i) for i in hist],
                                where))
    if not requests:
        raise BadInputError("no users in the file", path)
    return requests


def user_requests(data: PreparedData, users: Sequence[str]) -> list[Request]:
    """Known users of the dataset: their whole sequence is the history (what comes next?)."""
    from .artifacts import read_jsonl

    items = data.items()
    path = data.folder / "sequences.jsonl"
    by_user = {str(row["user"]): row["items"] for row in read_jsonl(path)}
    out = []
    for u in users:
        if u not in by_user:
            raise BadInputError(f"user {u!r} is not in the dataset", path)
        out.append(Request(u, [str(items[i]["id"]) for i in by_user[u]], f"--user {u}"))
    return out


def to_indices(requests: Sequence[Request], id_to_index: dict[str, int]) -> list[list[int]]:
    """Source item ids -> item indices; an unknown id is one clear error naming it."""
    out = []
    for r in requests:
        idx = []
        for item in r.history:
            if item not in id_to_index:
                raise BadInputError(f"item {item!r} is not in the catalogue of this run", r.where)
            idx.append(id_to_index[item])
        out.append(idx)
    return out


def recommend(run: Run | Path, requests: Sequence[Request], cfg: RecommendConfig) -> list[dict]:
    """One record per request: the user, the history length and the top-k items with rank,
    id, title, SID and score."""
    from .device import resolve_device

    run = as_run(run)
    device = resolve_device(cfg.device)
    items = run.data.items()
    histories = to_indices(requests, {str(it["id"]): i for i, it in enumerate(items)})
    top, scores = top_items(run, cfg.model, histories, cfg.k, num_beams=cfg.num_beams,
                            device=device, exclude_history=cfg.exclude_history, fill=True)
    codes = _codes_or_none(run)
    out = []
    for r, hist, row, row_s in zip(requests, histories, top, scores, strict=True):
        recs = []
        for rank, (i, s) in enumerate(zip(row.tolist(), row_s.tolist(), strict=True), 1):
            if i < 0:
                continue
            recs.append({"rank": rank, "id": str(items[i]["id"]),
                         "title": items[i].get("title") or "",
                         "sid": None if codes is None else [int(c) for c in codes[i]],
                         "score": round(float(s), 5)})
        out.append({"user": r.user, "history": len(hist), "items": recs})
    return out


def _codes_or_none(run: Run) -> np.ndarray | None:
    """Item SIDs when the run has them (a SASRec / popularity run may not)."""
    from .errors import ArtifactError

    try:
        return run.sids.codes
    except ArtifactError:
        return None
