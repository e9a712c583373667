"""Top-K items from any trained model of a run, by its name (``names.py``): the one place
models are loaded for inference and asked for recommendations (`sgrec eval`, `sgrec
recommend` / `serve`, the judge's beam candidates). Nothing here trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .names import check_model, split_model
from .rundir import Run

if TYPE_CHECKING:
    from .generator.decode import Ranker

TopItems = Callable[..., tuple[np.ndarray, np.ndarray]]
# ``@ranker``: the fusion weight is chosen on this many seeded validation users (all of them
# when fewer), searched with this many beams, when the model is loaded
RANKER_TUNE_USERS, RANKER_TUNE_BEAMS = 2000, 20


def load_top_items(run: Run, model: str, device: str = "auto") -> TopItems:
    """Load ``model`` once and return ``top(histories, k, *, num_beams=20,
    exclude_history=True, fill=False, decode="beam") -> (items (U, k) int64, scores (U, k)
    float32)``, best first: what ``top_items`` answers, for callers that ask many times
    (``sgrec serve``). ``decode`` (generators): ``decode.DECODE_MODES``.

    Scores: the SID log-probability (generators; the hybrid score with hybrid scoring, the
    fused score with ``@ranker``, which reads the run's SASRec), the logit (sasrec), the
    training count (popular). ``fill``: see ``generator_top_items``.
    """
    check_model(model)
    model, score = split_model(model)
    if model == "popular":
        from .baselines.popularity import MostPopular

        data = run.data
        pop = MostPopular().fit(data.split("train"), data.sequences(),
                                n_items=len(data.items()))

        def top_popular(histories, k, *, num_beams=20, exclude_history=True, fill=False,
                        decode="beam"):
            items = pop.recommend(histories, k, exclude_history=exclude_history)
            scores = np.where(items >= 0, pop.counts[items.clip(min=0)], -np.inf)
            return items, scores.astype(np.float32)

        return top_popular
    if model == "sasrec":
        from .baselines.sasrec import recommend
        from .baselines.store import load_sasrec

        sasrec = load_sasrec(run)

        def top_sasrec(histories, k, *, num_beams=20, exclude_history=True, fill=False,
                        decode="beam"):
            return recommend(sasrec, histories, k, exclude_history=exclude_history,
                             with_scores=True)

        return top_sasrec
    from .generator.decode import generator_top_items
    from .generator.store import load_generator_step

    gen = load_generator_step(run, model, device)
    ranker = _ranker(run, gen) if score == "ranker" else None

    def top_generator(histories, k, *, num_beams=20, exclude_history=True, fill=False,
                        decode="beam"):
        return generator_top_items(gen, histories, k, num_beams,
                                   exclude_history=exclude_history, fill=fill, score=score,
                                   decode=decode, ranker=ranker)

    if ranker is not None:  # the fusion weight chosen at load, for what reports it
        top_generator.ranker_weight = ranker.weight
    return top_generator


def _ranker(run: Run, gen) -> Ranker:
    """The run's SASRec as a ``decode.Ranker``, its weight in the fused score chosen on
    validation (``fusion_weight``; a run without SASRec is refused by ``load_sasrec``, in one
    line)."""
    from .baselines.store import load_sasrec
    from .generator.decode import Ranker

    ranker = sasrec_ranker(load_sasrec(run))
    return Ranker(ranker.log_probs, fusion_weight(run, gen, ranker))


def sasrec_ranker(sasrec) -> Ranker:
    """A loaded SASRec as a ``decode.Ranker`` (its weight unset)."""
    from functools import partial

    from .baselines.sasrec import catalogue_log_probs
    from .generator.decode import Ranker

    return Ranker(partial(catalogue_log_probs, sasrec))


def fusion_weight(run: Run, gen, ranker: Ranker) -> float:
    """The ranker's weight in the generator ``gen``'s fused score (`@ranker`), chosen on up to
    ``RANKER_TUNE_USERS`` seeded validation users by NDCG@10 (ties: nearest the default)."""
    from .generator.decode import choose_weight, hybrid_weight_curve
    from .names import RANKER_WEIGHT
    from .sampling import seeded_subset

    valid = seeded_subset(run.data.split("valid"), RANKER_TUNE_USERS, 0)
    curve = hybrid_weight_curve(gen.model, gen.vocab, gen.trie, [e.history for e in valid],
                                [e.target for e in valid], gen.codes, RANKER_TUNE_BEAMS,
                                max_history=gen.max_history, ranker=ranker)
    return choose_weight(curve, RANKER_WEIGHT)


def top_items(run: Run, model: str, histories: Sequence[Sequence[int]], k: int, *,
              num_beams: int = 20, device: str = "auto", exclude_history: bool = True,
              fill: bool = False, decode: str = "beam") -> tuple[np.ndarray, np.ndarray]:
    """(items (U, k) int64, scores (U, k) float32) of one model, best first (see
    ``load_top_items``)."""
    return load_top_items(run, model, device)(histories, k, num_beams=num_beams,
                                              exclude_history=exclude_history, fill=fill,
                                              decode=decode)
