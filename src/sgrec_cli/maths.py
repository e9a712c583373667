"""Shared maths of more than one package: group standardisation (A2PO's advantages and the
judge's group-RL aggregator both use it)."""

from __future__ import annotations

import numpy as np

EPS = 1e-6  # keeps a near-constant group's standardised values finite


def standardise(r, eps: float = EPS):
    """(r - mean) / (std + eps) within each group (row) of r (B, G); 0 for a constant group.

    A group holding a NaN stays NaN throughout. ``r`` may be a torch tensor (the judge's
    group-RL aggregator trains through it); the result then is one too.
    """
    if not isinstance(r, np.ndarray) and type(r).__module__.startswith("torch"):
        import torch

        mean = r.mean(dim=1, keepdim=True)  # (B, 1)
        std = r.std(dim=1, correction=0, keepdim=True)  # (B, 1)
        const = r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True)
        return torch.where(const, torch.zeros_like(r), (r - mean) / (std + eps))
    r = np.asarray(r, dtype=np.float64)  # (B, G)
    if r.ndim != 2:
        raise ValueError(f"rewards {r.shape} must be (B, G)")
    mean = r.mean(axis=1, keepdims=True)  # (B, 1)
    std = r.std(axis=1, keepdims=True)  # (B, 1), population std (ddof=0)
    a = (r - mean) / (std + eps)
    # mean of equal floats can differ from them by an ulp: force an exact 0, not ~1e-11
    a[r.max(axis=1) == r.min(axis=1)] = 0.0
    return a
