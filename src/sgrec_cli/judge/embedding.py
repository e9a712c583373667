"""The `embedding` backend: deterministic aspect scores from unit item embeddings.

For a history h_1..h_T (oldest first) with unit embeddings e_1..e_T and a candidate with unit
embedding c:

* profile(x, a) = (1 + cos(c, p)) / 2, p = (1/T) sum_j e_j: fit to the long-term interests;
* future(x, a) = (1 + cos(c, f)) / 2, f = r + drift (r - p), r = sum_j w_j e_j / sum_j w_j with
  w_j = 2^(-(T - j) / half_life): the recency-weighted interest r, pushed further along the
  direction it has been moving away from the long-term profile p (drift = 1, half_life = 1);
* novelty(x, a) = (1 - max_j cos(c, e_j)) / 2: high unless the candidate is a near-duplicate of
  something already consumed.

cos(u, v) = u.v / (|u||v|) (0 when a vector is zero), so every score lies in [0, 1]. The cost is
one (C x D) by (D x T) product per user: cheap enough to judge every RL rollout on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HALF_LIFE = 1.0
DRIFT = 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def recency_weights(t: int, half_life: float = HALF_LIFE) -> np.ndarray:
    """w_j = 2^(-(T - j) / half_life) for j = 1..T (the most recent item has weight 1)."""
    return np.power(2.0, -(t - 1 - np.arange(t)) / half_life)


def interest_vectors(hist_emb: np.ndarray, half_life: float = HALF_LIFE,
                     drift: float = DRIFT) -> tuple[np.ndarray, np.ndarray]:
    """(unit profile p, unit trend f) from the history embeddings (T, D), oldest first."""
    p = hist_emb.mean(axis=0)
    w = recency_weights(hist_emb.shape[0], half_life)
    r = (w[:, None] * hist_emb).sum(axis=0) / w.sum()
    return _unit(p), _unit(r + drift * (r - p))


def aspect_scores(emb: np.ndarray, history: Sequence[int], candidates: Sequence[int],
                  half_life: float = HALF_LIFE,
                  drift: float = DRIFT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (C, 3) in [0, 1] for profile / future / novelty, nearest history position (C,),
    its cosine (C,)). ``emb`` rows are unit vectors."""
    hist_emb = emb[np.asarray(history, dtype=np.int64)]  # (T, D)
    cand = emb[np.asarray(candidates, dtype=np.int64)]  # (C, D)
    p, f = interest_vectors(hist_emb, half_life, drift)
    sims = cand @ hist_emb.T  # (C, T)
    nearest = sims.argmax(axis=1)
    near_cos = sims[np.arange(len(candidates)), nearest]
    scores = np.stack([(1 + cand @ p) / 2, (1 + cand @ f) / 2, (1 - near_cos) / 2], axis=1)
    return np.clip(scores, 0.0, 1.0), nearest, near_cos


def evidence(titles: Sequence[str], history: Sequence[int], nearest_pos: int,
             near_cos: float) -> str:
    """One readable line: the purchase the candidate is closest to."""
    title = " ".join(str(titles[history[nearest_pos]]).split())[:60]
    return f"closest purchase: '{title}' (cos {near_cos:.2f})"


class EmbeddingBackend:
    """Stage A without prompts: scores every (user, candidate) pair from item embeddings."""

    name = "embedding"

    def __init__(self, emb: np.ndarray, half_life: float = HALF_LIFE, drift: float = DRIFT):
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self.emb = (emb / np.where(norms > 0, norms, 1)).astype(np.float32)
        self.half_life, self.drift = half_life, drift

    def score(self, history: Sequence[int], candidates: Sequence[int]):
        return aspect_scores(self.emb, history, candidates, self.half_life, self.drift)
