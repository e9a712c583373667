"""Top-K items for users from any trained model of a run: the one place models are asked for
recommendations, used by `sgrec eval` (metrics) and `sgrec recommend` (inference).

Histories are item indices (oldest first). Every model excludes the user's own history items
from its list when ``exclude_history`` is set (the evaluation protocol: the datasets here have no
repeat purchases, so a history item can never be the target).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEVICES, require
from .data.store import PreparedData, load_data
from .errors import BadInputError, ConfigError

MODELS = ("sft", "a2po", "sasrec", "popular")


def known_model(name: str) -> bool:
    """The built-in models, and A2PO runs saved under a tag (``a2po-<tag>``)."""
    return name in MODELS or name.startswith("a2po-")


def drop_seen(items: np.ndarray, scores: np.ndarray, histories: Sequence[Sequence[int]],
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's history items, keep the first ``k`` of what is left (order kept).

    ``items`` (U, M) int64 with -1 for empty slots, ``scores`` (U, M). Returns (U, k) arrays;
    rows with fewer than k items left are padded with -1 / -inf.
    """
    n_users = items.shape[0]
    out = np.full((n_users, k), -1, dtype=np.int64)
    out_s = np.full((n_users, k), -np.inf, dtype=np.float32)
    for u in range(n_users):
        seen = np.asarray(list(histories[u]), dtype=np.int64)
        keep = (items[u] >= 0) & ~np.isin(items[u], seen)
        row, row_s = items[u][keep][:k], scores[u][keep][:k]
        out[u, : row.size], out_s[u, : row.size] = row, row_s
    return out, out_s


def top_items(run: Path, data: PreparedData, model: str, histories: Sequence[Sequence[int]],
              k: int, num_beams: int = 20, device: str = "cpu", exclude_history: bool = True,
              fill: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(items (U, k) int64, scores (U, k) float32) of one model, best first.

    Scores: the SID log-probability (sft), the logit (sasrec), the training count (popular).
    For the generator, ``num_beams`` beams are searched; ``fill`` widens the search by the
    longest history so that k items remain after history items are dropped, while without it
    a dropped beam leaves an empty slot.
    """
    if not known_model(model):
        raise ConfigError(f"--model {model!r} is not known; use one of: {', '.join(MODELS)}")
    if model == "popular":
        from .baselines.popularity import MostPopular

        pop = MostPopular().fit(data.split("train"), data.sequences(),
                                n_items=len(data.items()))
        items = pop.recommend(histories, k, exclude_history=exclude_history)
        scores = np.where(items >= 0, pop.counts[items.clip(min=0)], -np.inf)
        return items, scores.astype(np.float32)
    if model == "sasrec":
        from .baselines.sasrec import recommend
        from .train import load_sasrec

        return recommend(load_sasrec(run), histories, k, exclude_history=exclude_history,
                         with_scores=True)
    from .generator.trie import SidTrie
    from .train import load_sft

    sft = load_sft(run, device=device, step=model)
    trie = SidTrie.from_codes(sft.codes, sft.vocab.codebook_sizes)
    return generator_top_items(sft.model, sft.vocab, trie, sft.codes, histories, k, num_beams,
                               sft.max_history, exclude_history=exclude_history, fill=fill)


def generator_top_items(model, vocab, trie, codes: np.ndarray,
                        histories: Sequence[Sequence[int]], k: int, num_beams: int,
                        max_history: int, exclude_history: bool = True,
                        fill: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The generator's (items, scores) (U, k), as ``top_items`` describes, from a model in
    memory (eval and recommend load it from the run; A2PO validates the policy it trains)."""
    from .generator.sft import predict_topk

    longest = max((len(h) for h in histories), default=0)
    beams = max(num_beams, k) + (longest if fill and exclude_history else 0)
    beams = min(beams, codes.shape[0])  # no more beams than catalogue items
    items, scores = predict_topk(model, vocab, trie, histories, codes, beams,
                                 num_beams=beams, max_history=max_history, with_scores=True)
    if not exclude_history:
        return items[:, :k], scores[:, :k]
    return drop_seen(items, scores, histories, k)


# ----------------------------------------------------------------------------- `sgrec recommend`


@dataclass
class RecommendConfig:
    """`sgrec recommend`: top-K items for given histories or users, from a trained model.

    model            sft (the generator), sasrec or popular
    k                items per user
    num_beams        generator beams (widened so k items remain once history items are dropped)
    exclude_history  leave the user's own history items out of the list
    device           auto, cpu or cuda
    """

    model: str = "sft"
    k: int = 10
    num_beams: int = 20
    exclude_history: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require(known_model(self.model),
                f"--model {self.model!r} is not known; use one of: {', '.join(MODELS)}")
        require(isinstance(self.k, int) and not isinstance(self.k, bool) and self.k >= 1,
                f"--k {self.k!r} must be an integer >= 1 (default 10)")
        require(isinstance(self.num_beams, int) and self.num_beams >= 1,
                f"--num-beams {self.num_beams!r} must be an integer >= 1 (default 20)")
        require(self.device in DEVICES,
                f"--device {self.device!r} is not known; use one of: {', '.join(DEVICES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"cannot read the file of users ({e})", path) from None
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


def recommend(run: Path, requests: Sequence[Request], cfg: RecommendConfig) -> list[dict]:
    """One record per request: the user, the history length and the top-k items with rank,
    id, title, SID and score."""
    cfg.validate()
    from .device import resolve_device

    device = resolve_device(cfg.device)
    data = load_data(run)
    items = data.items()
    histories = to_indices(requests, {str(it["id"]): i for i, it in enumerate(items)})
    top, scores = top_items(run, data, cfg.model, histories, cfg.k, num_beams=cfg.num_beams,
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


def _codes_or_none(run: Path) -> np.ndarray | None:
    """Item SIDs when the run has them (a SASRec / popularity run may not)."""
    from .errors import ArtifactError
    from .sids.build import load_sids

    try:
        return load_sids(run).codes
    except ArtifactError:
        return None
