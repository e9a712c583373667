"""`sgrec recommend`: parse who to recommend for (histories, dataset users, a file of users),
ask a model loaded once (``Recommender``, through ``models.load_top_items``) and return
readable records (id, title, SID, score). ``sgrec serve`` answers through the same class."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.store import PreparedData
from ..errors import BadInputError
from ..rundir import Run, as_run
from .config import RecommendConfig

__all__ = ["FIRST_WIDEN", "Request", "Query", "Recommender", "parse_history",
           "read_requests", "user_requests", "recommend", "widen"]


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
    from ..data.io import read_text, require_file

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
    by_user, items = _user_sequences(data), data.items()
    return [_user_request(items, by_user, u, f"--user {u}") for u in users]


def _user_sequences(data: PreparedData) -> dict[str, list[int]]:
    from ..artifacts import read_jsonl

    return {str(row["user"]): row["items"] for row in read_jsonl(data.folder / "sequences.jsonl")}


def _user_request(items: list[dict], by_user: dict[str, list[int]], user: str,
                  where: str) -> Request:
    if user not in by_user:
        raise BadInputError(f"user {user!r} is not in the dataset", where)
    return Request(user, [str(items[i]["id"]) for i in by_user[user]], where)


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


FIRST_WIDEN = 8  # extra beams of the first search when history items are dropped


def widen(history_len: int) -> int:
    """Extra beams that make sure k items remain once a history of this length is dropped:
    the length rounded up to a power of two, at least ``FIRST_WIDEN`` (0 for no history)."""
    return 0 if history_len <= 0 else max(FIRST_WIDEN, 1 << (history_len - 1).bit_length())


@dataclass
class Query:
    """A request resolved against the catalogue: history as item indices, and what to answer."""

    user: str | None
    history: list[int]
    k: int
    exclude_history: bool


class Recommender:
    """One model of a run, loaded once, answering queries (``sgrec recommend`` calls it once;
    ``sgrec serve`` for every batch of requests)."""

    def __init__(self, run: Run | Path, model: str = "sft", *, num_beams: int = 20,
                 device: str = "auto", decode: str = "auto"):
        from ..device import resolve_device
        from ..models import load_top_items

        self.run = as_run(run)
        self.model = model
        self.num_beams = num_beams
        self.decode = decode
        self.device = resolve_device(device)
        self.top = load_top_items(self.run, model, self.device)
        self.items = self.run.data.items()
        self.id_to_index = {str(it["id"]): i for i, it in enumerate(self.items)}
        self.codes = _codes_or_none(self.run)
        self._by_user: dict[str, list[int]] | None = None

    @property
    def n_items(self) -> int:
        return len(self.items)

    def manifest_summary(self) -> dict:
        """Which artifact answers: the model's step manifest (the data's for popular)."""
        from ..names import model_step

        m = self.run.manifest(model_step(self.model) or "data")
        return {"step": m.step, "created_at": m.data.get("created_at"),
                "sgrec_version": m.data.get("sgrec_version"), "digest": m.digest,
                "dataset": m.dataset.get("name"), "config": m.config}

    def load_users(self) -> None:
        """Read the dataset's users now rather than on the first user request."""
        if self._by_user is None:
            self._by_user = _user_sequences(self.run.data)

    def user_request(self, user: str, where: str) -> Request:
        """A dataset user's request (their whole sequence is the history)."""
        self.load_users()
        assert self._by_user is not None
        return _user_request(self.items, self._by_user, user, where)

    def resolve(self, request: Request, k: int, exclude_history: bool) -> Query:
        """A request -> a query; an unknown item id is one clear error naming it."""
        return Query(request.user, to_indices([request], self.id_to_index)[0], k,
                     exclude_history)

    def beams(self, q: Query, wide: bool = False) -> int:
        """Beams searched for a query, from its own input only (never its batch companions'):
        ``num_beams`` (or k) plus ``FIRST_WIDEN`` when history items are dropped; ``wide``:
        plus ``widen(history length)``, the second search of a query whose first left fewer
        than k items."""
        extra = 0
        if q.exclude_history and q.history:
            extra = widen(len(q.history)) if wide else FIRST_WIDEN
        return min(max(self.num_beams, q.k) + extra, self.n_items)

    def answer(self, queries: Sequence[Query]) -> list[dict]:
        """One record per query (user, history length, items with rank, id, title, SID and
        score). Queries that search alike (same k, exclusion and beams) share one batched
        search. A query left with fewer than k items once its history items are dropped is
        searched again with ``beams(wide=True)``, enough for its whole history. Each query's
        list depends on its own input only."""
        rows = self._search(queries, range(len(queries)), wide=False)
        again = [n for n, (row, _) in rows.items() if (row >= 0).sum() < queries[n].k
                 and self.beams(queries[n], wide=True) > self.beams(queries[n])]
        rows.update(self._search(queries, again, wide=True))
        return [self._record(q, *rows[n]) for n, q in enumerate(queries)]

    def _search(self, queries: Sequence[Query], which: Sequence[int], wide: bool
                ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        groups: dict[tuple[int, bool, int], list[int]] = {}
        for n in which:
            q = queries[n]
            groups.setdefault((q.k, q.exclude_history, self.beams(q, wide)), []).append(n)
        out = {}
        for (k, exclude, beams), members in groups.items():
            top, scores = self.top([queries[n].history for n in members], k, num_beams=beams,
                                   exclude_history=exclude, decode=self.decode)
            for n, row, row_s in zip(members, top, scores, strict=True):
                out[n] = (row, row_s)
        return out

    def _record(self, q: Query, row: np.ndarray, row_s: np.ndarray) -> dict:
        recs = []
        for rank, (i, s) in enumerate(zip(row.tolist(), row_s.tolist(), strict=True), 1):
            if i < 0:
                continue
            recs.append({"rank": rank, "id": str(self.items[i]["id"]),
                         "title": self.items[i].get("title") or "",
                         "sid": None if self.codes is None else [int(c) for c in self.codes[i]],
                         "score": round(float(s), 5)})
        return {"user": q.user, "history": len(q.history), "items": recs}


def recommend(run: Run | Path, requests: Sequence[Request], cfg: RecommendConfig) -> list[dict]:
    """One record per request: the user, the history length and the top-k items with rank,
    id, title, SID and score."""
    rec = Recommender(run, cfg.model, num_beams=cfg.num_beams, device=cfg.device,
                      decode=cfg.decode)
    return rec.answer([rec.resolve(r, cfg.k, cfg.exclude_history) for r in requests])


def _codes_or_none(run: Run) -> np.ndarray | None:
    """Item SIDs when the run has them (a SASRec / popularity run may not)."""
    from ..errors import ArtifactError

    try:
        return run.sids.codes
    except ArtifactError:
        return None
