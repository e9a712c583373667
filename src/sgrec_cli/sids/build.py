"""`sgrec build-sids`: RUN/data -> RUN/sids.

Files: ``embeddings.npy`` (N, D) float32 item embeddings; ``sids.npy`` (N, L') int64 final codes
in item-index order; ``sids.json`` (readable: item id -> codes, with titles);
``quantizer.safetensors`` (RQ-VAE weights or the k-means codebooks); ``stats.json``;
``train_log.jsonl`` (RQ-VAE); ``manifest.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import (
    Manifest,
    atomic_write_json,
    load_manifest,
    require_same_dataset,
    staged_step,
    write_jsonl,
    write_manifest,
)
from ..config import BuildSidsConfig
from ..data.store import STEP as DATA_STEP
from ..data.store import load_data
from ..device import resolve_device
from ..errors import ArtifactError, ConfigError
from ..progress import progress_bar
from . import dedup as dd
from . import stats as st
from .embed import default_cache_dir, embed_items
from .kmeans import faiss_gpu_available, sq_distances
from .rqkmeans import residual_kmeans

STEP = "sids"


@dataclass
class Quantized:
    codes: np.ndarray  # (N, L) raw codes before dedup
    reconstruction: np.ndarray  # (N, D) in embedding space
    last_cost: np.ndarray  # (N, K): cost of each last-level code for each item (for reassign)
    tensors: dict  # name -> np.ndarray / torch tensor for quantizer.safetensors
    log: list[dict]
    extra: dict


def quantize(x: np.ndarray, cfg: BuildSidsConfig, device: str, progress: bool) -> Quantized:
    gpu = device == "cuda" and faiss_gpu_available()
    if cfg.method == "rqkmeans":
        rq = residual_kmeans(x, cfg.levels, cfg.codebook_size, seed=cfg.seed,
                             niter=cfg.kmeans_iters, gpu=gpu)
        tensors = {f"codebook_{i}": b for i, b in enumerate(rq.codebooks)}
        return Quantized(rq.codes, rq.reconstruction,
                         sq_distances(rq.last_residual_in, rq.codebooks[-1]), tensors, [],
                         {"faiss_gpu": gpu})

    from .rqvae import train_rqvae

    with progress_bar(progress) as bar:
        task = bar.add_task("RQ-VAE", total=cfg.epochs, info="")

        def on_epoch(epoch: int, row: dict | None) -> None:
            info = (f"collisions {row['collision_rate']:.3f}  "
                    f"rel.err {row['relative_reconstruction_error']:.3f}") if row else None
            bar.update(task, completed=epoch, **({"info": info} if info else {}))

        res = train_rqvae(
            x, levels=cfg.levels, k=cfg.codebook_size, hidden=list(cfg.hidden),
            latent_dim=cfg.latent_dim, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            beta=cfg.beta, seed=cfg.seed, target_collision_rate=cfg.target_collision_rate,
            eval_every=cfg.eval_every, patience=cfg.patience, device=device, faiss_gpu=gpu,
            on_epoch=on_epoch)
    last_book = res.model.codebooks[-1].detach().cpu().numpy()
    tensors = {k: v.detach().cpu().contiguous() for k, v in res.model.state_dict().items()}
    return Quantized(res.codes, res.reconstruction, sq_distances(res.last_residual_in, last_book),
                     tensors, res.history,
                     {"best_epoch": res.best_epoch, "epochs_run": res.history[-1]["epoch"],
                      "faiss_gpu": gpu})


def leaf_categories(items: list[dict]) -> list[str | None]:
    return [it["categories"][-1] if it.get("categories") else None for it in items]


def sid_stats(x: np.ndarray, q: Quantized, final: np.ndarray, items: list[dict],
              cfg: BuildSidsConfig) -> dict:
    labels = leaf_categories(items)
    coherence = (st.semantic_coherence(q.codes[:, 0], labels)
                 if any(lbl is not None for lbl in labels) else None)
    return {
        "method": cfg.method,
        "items": int(len(final)),
        "levels": cfg.levels,
        "codebook_size": cfg.codebook_size,
        "raw_collision_rate": dd.collision_rate(q.codes),
        "raw_prefix_collision_rates": st.prefix_collision_rates(q.codes),
        "raw_collision_groups": len(dd.collision_groups(q.codes)),
        "dedup": cfg.dedup,
        "final_sid_length": int(final.shape[1]),
        "final_collisions": len(dd.collision_groups(final)),
        "items_moved_by_dedup": int((final[:, : q.codes.shape[1]] != q.codes).any(1).sum()),
        "level_usage": st.level_usage(q.codes, cfg.codebook_size),
        "reconstruction_mse": st.reconstruction_mse(x, q.reconstruction),
        "relative_reconstruction_error": st.relative_reconstruction_error(x, q.reconstruction),
        "semantic_coherence_level1_leaf_category": coherence,
        **q.extra,
    }


def build_sids(cfg: BuildSidsConfig, run: Path, progress: bool = True) -> dict:
    """Embed, quantise, de-duplicate and write RUN/sids; return the stats."""
    started = time.time()
    run = Path(run)
    data = load_data(run)
    items = data.items()
    if len(items) < cfg.codebook_size:
        raise ConfigError(f"--codebook-size {cfg.codebook_size} exceeds the {len(items)} items; "
                          f"use a codebook size <= {len(items)}")
    device = resolve_device(cfg.device)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    x, emb_info = embed_items(items, embedder=cfg.embedder, template=cfg.template,
                              batch_size=cfg.embed_batch_size, device=device, cache_dir=cache,
                              progress=progress)
    t1 = time.perf_counter()
    q = quantize(x, cfg, device, progress)
    t2 = time.perf_counter()
    if cfg.dedup == "suffix":
        final = dd.dedup_suffix(q.codes)
    else:
        final = dd.dedup_reassign(q.codes, q.last_cost, cfg.codebook_size)
    dd.ensure_unique(final)
    stats = sid_stats(x, q, final, items, cfg)
    stats["seconds"] = {"embed": round(t1 - t0, 3), "quantize": round(t2 - t1, 3),
                        "embeddings_cached": emb_info["cached"]}
    stats["embedder"] = {k: emb_info[k] for k in ("embedder", "resolved", "dim", "cache_key")}
    stats["device"] = device

    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    with staged_step(run, STEP) as tmp:
        np.save(tmp / "embeddings.npy", x)
        np.save(tmp / "sids.npy", final.astype(np.int64))
        sizes = [cfg.codebook_size] * cfg.levels
        if final.shape[1] > cfg.levels:
            sizes.append(int(final[:, -1].max()) + 1)
        atomic_write_json(tmp / "sids.json", {
            "levels": int(final.shape[1]), "codebook_sizes": sizes,
            "items": {it["id"]: {"sid": [int(c) for c in row], "title": it["title"]}
                      for it, row in zip(items, final, strict=True)}})
        meta = {"method": cfg.method, "config": json.dumps(cfg.to_dict())}
        if cfg.method == "rqvae":
            save_torch(q.tensors, str(tmp / "quantizer.safetensors"), metadata=meta)
        else:
            save_np(q.tensors, str(tmp / "quantizer.safetensors"), metadata=meta)
        if q.log:
            write_jsonl(tmp / "train_log.jsonl", q.log)
        atomic_write_json(tmp / "stats.json", stats)
        write_manifest(tmp, step=STEP, config=cfg.to_dict(), seed=cfg.seed, started=started,
                       inputs={f"{DATA_STEP}/manifest.json": data.manifest.digest},
                       dataset=data.manifest.dataset)
    return stats


@dataclass
class SemanticIds:
    """A loaded RUN/sids folder, checked against the run's current data."""

    manifest: Manifest
    codes: np.ndarray  # (N, L') int64, row i = item index i
    codebook_sizes: list[int]

    def embeddings(self) -> np.ndarray:
        return np.load(self.manifest.path.parent / "embeddings.npy", allow_pickle=False)


def load_sids(run: Path) -> SemanticIds:
    """Open RUN/sids for a later step; refuse SIDs built from other data or edited files."""
    data = load_data(run)
    m = load_manifest(run, STEP)
    require_same_dataset(m, data.fingerprint)
    if m.data["inputs"].get(f"{DATA_STEP}/manifest.json") != data.manifest.digest:
        raise ArtifactError("built from an earlier data/ folder of this run (prepared again "
                            "since); run `sgrec build-sids` again", m.path)
    folder = m.path.parent
    codes = np.load(folder / "sids.npy", allow_pickle=False)
    sizes = json.loads((folder / "sids.json").read_text(encoding="utf-8"))["codebook_sizes"]
    return SemanticIds(manifest=m, codes=codes, codebook_sizes=sizes)
