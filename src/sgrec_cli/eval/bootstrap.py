"""Paired bootstrap over users for comparing two models evaluated on the same users.

With per-user metric values a_u, b_u (u = 1..n) and d_u = a_u - b_u, the observed difference is
diff = (1/n) sum_u d_u. One bootstrap replicate draws n users with replacement, u*_1..u*_n, and
computes diff*_r = (1/n) sum_i d_{u*_i}. Over R replicates:

* the (1 - alpha) confidence interval is the percentile interval
  [q_{alpha/2}(diff*), q_{1-alpha/2}(diff*)];
* the two-sided p-value is p = min(1, 2 min(P*(diff* <= 0), P*(diff* >= 0))), P* being the share
  of replicates: the percentile-bootstrap test of H0: E[a - b] = 0 (twice the smaller tail mass
  of the bootstrap distribution on either side of 0). Its resolution is 1/R, so p = 0 means
  p < 1/R. If all d_u = 0 both shares are 1 and p = 1.

Resampling is vectorised in chunks of at most ~2M index draws; the chunking depends on n only, so
results are deterministic given the seed.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, SgrecError

_CHUNK_ELEMENTS = 2_000_000
# Fewer users than this and a comparison is not called a test: its p-value and interval are
# kept but flagged, and no model is called better (a bootstrap over a handful of users says
# little about the population).
MIN_TEST_USERS = 30


def small_sample(n_users: int) -> str | None:
    """Why a test over ``n_users`` users is not reported as one, or None when it is."""
    if n_users >= MIN_TEST_USERS:
        return None
    return (f"only {n_users:,} user{'s' if n_users != 1 else ''} (a test needs at least "
            f"{MIN_TEST_USERS})")


def bootstrap_mean_diffs(d: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """R = n_boot replicates of mean(d[idx]) with idx ~ Uniform{0..n-1}^n, float64 (R,)."""
    n = d.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = d[idx].mean(axis=1)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, seed: int = 0,
                     alpha: float = 0.05) -> dict:
    """Compare per-user metrics a (model A) and b (model B) of the same users, in the same order.

    Returns mean_a, mean_b, diff = mean(a - b), rel_diff = diff / mean_b (None when mean_b = 0),
    ci_low / ci_high (percentile CI of diff at level 1 - alpha), p_value (see the module
    docstring), n_users, n_boot, alpha and seed. All values are plain Python numbers.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise SgrecError(f"per-user metrics must be 1-D, got shapes {a.shape} and {b.shape}")
    if a.size != b.size:
        raise SgrecError(f"paired bootstrap needs the same users for both models, got "
                         f"{a.size} and {b.size} values")
    if a.size == 0:
        raise SgrecError("paired bootstrap needs at least one user")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise SgrecError("per-user metrics contain NaN or infinite values")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    n_boot = int(n_boot)

    d = a - b
    diffs = bootstrap_mean_diffs(d, n_boot, seed)
    mean_a, mean_b, diff = float(a.mean()), float(b.mean()), float(d.mean())
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))
    return {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "diff": diff,
        "rel_diff": diff / mean_b if mean_b != 0 else None,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": p,
        "n_users": int(a.size),
        "n_boot": n_boot,
        "alpha": float(alpha),
        "seed": int(seed),
    }
