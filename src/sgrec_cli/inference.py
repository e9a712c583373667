"""Top-K items from any trained model of a run: the one place models are loaded for inference
and asked for recommendations (`sgrec eval`, `sgrec recommend`, the judge's beam candidates and
A2PO's validation all come here). Nothing here trains.

Histories are item indices (oldest first). Every model excludes the user's own history items
from its list when ``exclude_history`` is set (the evaluation protocol: the datasets here have no
repeat purchases, so a history item can never be the target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .rundir import Run

MODELS = ("sft", "a2po", "sasrec", "popular")
MODEL_HELP = ("sft, a2po, a2po-TAG (from train --a2po --tag TAG), sasrec or popular; a "
              "generator may name its scoring: sft@generator, sft@hybrid")
SCORINGS = ("generator", "hybrid")  # a generator's scoring modes (config.SCORE_MODES)


def split_model(name: str) -> tuple[str, str | None]:
    """``sft@hybrid`` -> ("sft", "hybrid"); a name without ``@`` scores as its model was
    trained to (None)."""
    base, at, score = name.partition("@")
    return base, (score if at else None)


def _is_generator(base: str) -> bool:
    return base in ("sft", "a2po") or (base.startswith("a2po-") and len(base) > len("a2po-"))


def known_model(name: str) -> bool:
    """The built-in models, A2PO runs saved under a tag (``a2po-<tag>``), and a generator with
    its scoring named (``sft@generator``: the pure generator of a hybrid model)."""
    base, score = split_model(name)
    if score is not None:
        return _is_generator(base) and score in SCORINGS
    return base in MODELS or _is_generator(base)


def check_model(name: str) -> None:
    if not known_model(name):
        raise ConfigError(f"--model {name!r} is not known; use {MODEL_HELP}")


def model_step(name: str) -> str | None:
    """The run folder a model is loaded from (None: popular is fit from the data)."""
    base, _ = split_model(name)
    return None if base == "popular" else base


# ---------------------------------------------------------------------------------- loaders


@dataclass(frozen=True)
class LoadedGenerator:
    """A trained generator (SFT or an A2PO fine-tune) ready for decoding."""

    model: Any  # T5ForConditionalGeneration in eval mode
    vocab: Any  # SidVocab
    trie: Any  # SidTrie of the run's SIDs
    codes: np.ndarray  # (N, L) item SIDs, row i = item index i
    max_history: int  # history items the model reads (RUN/data's max history)


def load_generator_step(run: Run, step: str = "sft", device: str = "auto") -> LoadedGenerator:
    """RUN/<step>/best, checked against the run's data and SIDs."""
    from .device import resolve_device
    from .generator.model import load_generator
    from .generator.trie import SidTrie

    m = run.step(step, needs=("data", "sids"))
    model, _cfg, vocab = load_generator(m.path.parent / "best", device=resolve_device(device))
    codes = run.sids.codes
    return LoadedGenerator(model, vocab, SidTrie.from_codes(codes, vocab.codebook_sizes), codes,
                           run.data.max_history)


def load_sasrec(run: Run):
    """RUN/sasrec, checked against the run's data."""
    import json

    from safetensors.torch import load_file

    from .baselines.sasrec import SASRec
    from .config import SASRecConfig

    m = run.step("sasrec", needs=("data",))
    folder = m.path.parent
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    n_items = meta.pop("n_items")
    model = SASRec(n_items, SASRecConfig(**meta))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return model


# -------------------------------------------------------------------------------- decoding


def score_mode(model, score: str | None) -> str:
    """The scoring a generator is asked for: ``score``, or its own (config) when None; hybrid
    needs a model trained with the dense head."""
    mode = model.gen.score if score is None else score
    if mode not in SCORINGS:
        raise ConfigError(f"score {mode!r} is not known; use one of {', '.join(SCORINGS)}")
    if mode == "hybrid" and not model.hybrid:
        raise ConfigError("hybrid scoring needs a generator trained with a dense head "
                          "(sgrec train --score hybrid); this one has none")
    return mode


def predict_topk(model, vocab, trie, histories: Sequence[Sequence[int]], codes: np.ndarray,
                 k: int, num_beams: int, *, batch: int = 256, max_history: int | None = None,
                 with_scores: bool = False, score: str | None = None,
                 exclude_history: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-k item indices per user, (U, k) int64, best first, by constrained beam search.

    Items are distinct catalogue items; ``-1`` fills slots when fewer than k are reachable.
    ``max_history`` keeps only the most recent items of each history (default: all of them).
    ``score``: generator (SID log-probability) or hybrid (generator/hybrid.py; the model needs
    its dense head); default the model's own ``score``. ``exclude_history``: the hybrid's dense
    candidates leave out history items (beams are filtered by the caller, ``drop_seen``).
    ``with_scores`` also returns the scores, (U, k) float32 (-inf on empty slots).
    """
    import torch

    from .generator.beam import constrained_beam_search
    from .generator.hybrid import hybrid_search

    score = score_mode(model, score)
    device = next(model.parameters()).device
    n_users = len(histories)
    out = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            if score == "hybrid":
                seen = [histories[i] for i in rows] if exclude_history else None
                items, scores = hybrid_search(model, ids.to(device), mask.to(device), trie,
                                              vocab, num_beams, topk=k, exclude=seen)
            else:
                items, scores = constrained_beam_search(
                    model, ids.to(device), mask.to(device), trie, vocab, num_beams, topk=k)
            out[rows] = items.cpu().numpy()
            out_scores[rows] = scores.float().cpu().numpy()
    return (out, out_scores) if with_scores else out


def _user_batches(model, vocab, histories: Sequence[Sequence[int]], codes: np.ndarray,
                  batch: int, max_history: int | None):
    """Yield ``(rows, input_ids, attention_mask)`` over the users, ``batch`` at a time, in
    order of history length (batches of alike lengths pad less; ``rows`` says where each
    user's results go); ``max_history`` keeps the most recent items (default: all)."""
    if batch < 1:
        raise ConfigError(f"batch {batch!r} must be >= 1")
    longest = max((len(h) for h in histories), default=1)
    keep = max(1, longest if max_history is None else max_history)
    order = np.argsort([-min(len(h), keep) for h in histories], kind="stable")
    for start in range(0, len(histories), batch):
        rows = order[start : start + batch]
        ids, mask = vocab.encode_history([histories[i] for i in rows], codes, keep,
                                         per_item=model.per_item)
        yield rows, ids, mask


HYBRID_WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def hybrid_weight_curve(model, vocab, trie, histories: Sequence[Sequence[int]],
                        targets: Sequence[int], codes: np.ndarray, num_beams: int, *,
                        k: int = 10, batch: int = 256, max_history: int | None = None,
                        grid: Sequence[float] = HYBRID_WEIGHT_GRID) -> dict[float, float]:
    """Mean NDCG@k of a hybrid model's recommendations (as ``predict_topk`` makes them, the
    user's history items excluded, then ``drop_seen``) for each weight of ``grid``:
    {weight: NDCG@k}. The candidates and both halves of their score do not depend on the
    weight, so they are computed once (generator/hybrid.py)."""
    import torch

    from .eval.metrics import ndcg_gains, ranks_of_targets
    from .generator.hybrid import hybrid_candidates, rank_candidates

    score_mode(model, "hybrid")  # refuses a model without a dense head
    device = next(model.parameters()).device
    tops = {w: np.full((len(histories), k), -1, dtype=np.int64) for w in grid}
    with torch.no_grad():
        for rows, ids, mask in _user_batches(model, vocab, histories, codes, batch,
                                             max_history):
            seen = [histories[i] for i in rows]
            cand = hybrid_candidates(model, ids.to(device), mask.to(device), trie, vocab,
                                     num_beams, exclude=seen)
            n_cand = cand[0].shape[1]
            for w in grid:
                items, scores = rank_candidates(*cand, w, n_cand)
                tops[w][rows] = drop_seen(items.cpu().numpy(), scores.float().cpu().numpy(),
                                          seen, k)[0]
    targets = np.asarray(targets, dtype=np.int64)
    return {w: float(np.mean(ndcg_gains(ranks_of_targets(top, targets), k)))
            for w, top in tops.items()}


def choose_weight(curve: dict[float, float], prefer: float) -> float:
    """The weight of ``curve`` ({weight: metric}) with the best metric; ties go to the one
    nearest ``prefer`` (then the smaller)."""
    if not curve:
        raise ValueError("no weights to choose from")
    return max(curve, key=lambda w: (curve[w], -abs(w - prefer), -w))


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


def predict_unseen(model, vocab, trie, histories: Sequence[Sequence[int]], codes: np.ndarray,
                   k: int, num_beams: int, *, batch: int = 256, max_history: int | None = None,
                   score: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) (U, k): the first ``k`` of the ``num_beams`` best items (``predict_topk``,
    history excluded from the hybrid's dense candidates) that are not in the user's history;
    -1 / -inf fill a row with fewer left."""
    items, scores = predict_topk(model, vocab, trie, histories, codes, num_beams,
                                 num_beams=num_beams, batch=batch, max_history=max_history,
                                 with_scores=True, score=score, exclude_history=True)
    return drop_seen(items, scores, histories, k)


def generator_top_items(gen: LoadedGenerator, histories: Sequence[Sequence[int]], k: int,
                        num_beams: int, *, exclude_history: bool = True,
                        fill: bool = False, score: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The generator's (items, scores) (U, k), best first. ``num_beams`` beams are searched;
    ``fill`` widens the search by the longest history so that k items remain after history
    items are dropped, while without it a dropped beam leaves an empty slot. ``score``:
    generator or hybrid (default: the model's own, ``score_mode``)."""
    longest = max((len(h) for h in histories), default=0)
    beams = max(num_beams, k) + (longest if fill and exclude_history else 0)
    beams = min(beams, gen.codes.shape[0])  # no more beams than catalogue items
    if exclude_history:
        return predict_unseen(gen.model, gen.vocab, gen.trie, histories, gen.codes, k, beams,
                              max_history=gen.max_history, score=score)
    items, scores = predict_topk(gen.model, gen.vocab, gen.trie, histories, gen.codes, beams,
                                 num_beams=beams, max_history=gen.max_history, with_scores=True,
                                 score=score)
    return items[:, :k], scores[:, :k]


TopItems = Callable[..., tuple[np.ndarray, np.ndarray]]


def load_top_items(run: Run, model: str, device: str = "auto") -> TopItems:
    """Load ``model`` once and return ``top(histories, k, *, num_beams=20,
    exclude_history=True, fill=False) -> (items (U, k) int64, scores (U, k) float32)``, best
    first: what ``top_items`` answers, for callers that ask many times (``sgrec serve``).

    Scores: the SID log-probability (generators; the hybrid score with hybrid scoring), the
    logit (sasrec), the training count (popular). ``fill``: see ``generator_top_items``.
    """
    check_model(model)
    model, score = split_model(model)
    if model == "popular":
        from .baselines.popularity import MostPopular

        data = run.data
        pop = MostPopular().fit(data.split("train"), data.sequences(),
                                n_items=len(data.items()))

        def top_popular(histories, k, *, num_beams=20, exclude_history=True, fill=False):
            items = pop.recommend(histories, k, exclude_history=exclude_history)
            scores = np.where(items >= 0, pop.counts[items.clip(min=0)], -np.inf)
            return items, scores.astype(np.float32)

        return top_popular
    if model == "sasrec":
        from .baselines.sasrec import recommend

        sasrec = load_sasrec(run)

        def top_sasrec(histories, k, *, num_beams=20, exclude_history=True, fill=False):
            return recommend(sasrec, histories, k, exclude_history=exclude_history,
                             with_scores=True)

        return top_sasrec
    gen = load_generator_step(run, model, device)

    def top_generator(histories, k, *, num_beams=20, exclude_history=True, fill=False):
        return generator_top_items(gen, histories, k, num_beams,
                                   exclude_history=exclude_history, fill=fill, score=score)

    return top_generator


def top_items(run: Run, model: str, histories: Sequence[Sequence[int]], k: int, *,
              num_beams: int = 20, device: str = "auto", exclude_history: bool = True,
              fill: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(items (U, k) int64, scores (U, k) float32) of one model, best first (see
    ``load_top_items``)."""
    return load_top_items(run, model, device)(histories, k, num_beams=num_beams,
                                              exclude_history=exclude_history, fill=fill)
