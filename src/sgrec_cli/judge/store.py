"""RUN/judge read back for A2PO: the semantic reward r_sem(x, a) = w(x)^T s(x, a) of a finished
judge. A backend that can score any (history, item) (``BackendSpec.live``) is recomputed per
rollout with the judge's aggregator; otherwise rewards are looked up in the judged pairs
(missing -> NaN, and the group falls back to A_biz). Callers never parse RUN/judge's files or
name a backend: they get a function."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError
from ..rundir import Run
from .backends import BACKENDS

# (user index, history item indices, candidate item indices (G,)) -> r_sem (G,), NaN = unknown
SemanticFn = Callable[[int, Sequence[int], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SemanticReward:
    fn: SemanticFn
    how: str  # for the log and the summary
    trained_on: set | None  # (user, position) examples the judge learned from: no r_sem there


def load_aggregator(folder):
    import torch
    from safetensors.numpy import load_file

    from .aggregator import Aggregator

    meta = json.loads((folder / "aggregator.json").read_text(encoding="utf-8"))
    state = {k: torch.from_numpy(v) for k, v in
             load_file(str(folder / "aggregator.safetensors")).items()}
    return Aggregator.from_state_dict(state, meta["aspects"])


def semantic_reward(run: Run) -> SemanticReward:
    """The r_sem of RUN/judge, refused unless it was built on the run's data and SIDs."""
    from .aggregator import user_features

    m = run.step("judge", needs=("data", "sids"))
    folder = m.path.parent
    backend = m.config.get("backend")
    spec = BACKENDS.get(backend)
    if spec is None:
        raise ArtifactError(f"judge backend {backend!r} is not known to this sgrec; re-run "
                            "`sgrec judge`", m.path)
    if spec.live is not None:
        scorer, trained_on = spec.live(folder, run, m.config)
        agg, emb = load_aggregator(folder), run.sids.embeddings()

        def live(user, history, cand):
            s, _, _ = scorer.score(history, cand)  # (G, A)
            w = agg.weights(user_features([list(history)], emb))[0]  # (A,)
            return s @ w

        return SemanticReward(live, f"{backend} judge (recomputed per rollout)", trained_on)
    users, items, rewards = (np.load(folder / f) for f in
                             ("pair_user.npy", "pair_item.npy", "reward.npy"))
    table = {(int(u), int(i)): float(r) for u, i, r in zip(users, items, rewards, strict=True)}

    def lookup(user, history, cand):
        return np.asarray([table.get((int(user), int(i)), np.nan) for i in cand])

    return SemanticReward(lookup, f"judge table ({backend}, {len(table):,} pairs)", None)
