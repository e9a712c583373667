"""Residual k-means (RQ-KMeans): L rounds of FAISS k-means on the running residual.

Level l clusters r_{l-1} (r_0 = x) into K centroids C_l; code c_l(i) = nearest centroid;
r_l = r_{l-1} - C_l[c_l]. No gradient training. The reconstruction is sum_l C_l[c_l].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kmeans import kmeans


@dataclass
class ResidualQuantization:
    codes: np.ndarray  # (N, L) int64
    codebooks: list[np.ndarray]  # L x (K, D)
    reconstruction: np.ndarray  # (N, D), in the space that was quantised
    last_residual_in: np.ndarray  # (N, D): the residual the last level quantised (for reassign)


def residual_kmeans(x: np.ndarray, levels: int, k: int, *, seed: int, niter: int = 25,
                    gpu: bool = False) -> ResidualQuantization:
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    codes, books = [], []
    last_in = residual
    for level in range(levels):
        last_in = residual.copy()
        res = kmeans(residual, k, seed=seed + level, niter=niter, gpu=gpu)
        codes.append(res.assign)
        books.append(res.centroids)
        residual = residual - res.centroids[res.assign]
    return ResidualQuantization(
        codes=np.stack(codes, axis=1), codebooks=books,
        reconstruction=(x - residual).astype(np.float32), last_residual_in=last_in)
