"""Semantic IDs: item embeddings, quantizers (RQ-VAE, residual k-means), dedup, stats."""
