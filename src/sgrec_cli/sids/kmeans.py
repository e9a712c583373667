"""FAISS k-means and nearest-codeword search, on the GPU when one is present."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


def faiss_gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


@dataclass
class KMeansResult:
    centroids: np.ndarray  # (K, D) float32
    assign: np.ndarray  # (N,) int64
    objective: list[float]  # sum of squared distances after each iteration


def kmeans(x: np.ndarray, k: int, *, seed: int, niter: int = 25, gpu: bool = False) -> KMeansResult:
    """Lloyd's k-means with FAISS (k-means++-free random init, ``seed`` fixed).

    FAISS subsamples to 256 points per centroid by default; we lift that cap so every item
    counts, and allow as few as 1 point per centroid (small catalogues, deep residual levels).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n < k:
        raise ConfigError(f"codebook size {k} is larger than the number of points ({n}); "
                          f"use a codebook size <= {n}")
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, gpu=gpu, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(n // k + 1, 256))
    km.train(x)
    _, assign = km.index.search(x, 1)
    obj = [float(v) for v in km.obj] if km.obj is not None else []
    return KMeansResult(np.asarray(km.centroids, dtype=np.float32), assign[:, 0].astype(np.int64),
                        obj)


def nearest(x: np.ndarray, codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and squared distance of each row's nearest codeword (exact search)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(np.ascontiguousarray(codebook, dtype=np.float32))
    dist, idx = index.search(x, 1)
    return idx[:, 0].astype(np.int64), dist[:, 0]


def sq_distances(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """All squared distances (N, K): ||x_i||^2 - 2 x_i.c_k + ||c_k||^2, clipped at 0."""
    x = x.astype(np.float64)
    c = codebook.astype(np.float64)
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)
