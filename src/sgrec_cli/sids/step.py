"""`sgrec build-sids`: RUN/data -> RUN/sids.

Files: ``embeddings.npy`` (N, D) float32 item text embeddings; ``collab.npy`` (N, C) the
collaborative vectors the quantizer also read (``--collab-dim``); ``sids.npy`` (N, L') int64
final codes in item-index order; ``sids.json`` (readable: item id -> codes, with titles);
``quantizer.safetensors`` (RQ-VAE weights or the k-means codebooks); ``stats.json``;
``train_log.jsonl`` (RQ-VAE); ``manifest.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_json, staged_step, write_jsonl, write_manifest
from ..device import resolve_device
from ..errors import ConfigError
from ..progress import progress_bar
from ..rundir import as_run
from ..runlock import writes_run
from . import dedup as dd
from . import stats as st
from .collab import collaborative_vectors, table_vectors
from .config import MAX_CODEBOOK, BuildSidsConfig
from .embed import default_cache_dir, embed_items, item_text
from .kmeans import faiss_gpu_available, sq_distances
from .rqkmeans import residual_kmeans
from .store import STEP


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

    with progress_bar(progress, "RQ-VAE steps", total=cfg.steps) as bar:

        def on_step(step: int, row: dict | None) -> None:
            if row:
                bar.note(f"collisions {row['collision_rate']:.3f}  "
                         f"rel.err {row['relative_reconstruction_error']:.3f}")
            bar.update(step)

        res = train_rqvae(
            x, levels=cfg.levels, k=cfg.codebook_size, hidden=list(cfg.hidden),
            latent_dim=cfg.latent_dim, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
            beta=cfg.beta, seed=cfg.seed, target_collision_rate=cfg.target_collision_rate,
            eval_every=cfg.eval_every, patience=cfg.patience, device=device, faiss_gpu=gpu,
            on_step=on_step)
    last_book = res.model.codebooks[-1].detach().cpu().numpy()
    tensors = {k: v.detach().cpu().contiguous() for k, v in res.model.state_dict().items()}
    return Quantized(res.codes, res.reconstruction, sq_distances(res.last_residual_in, last_book),
                     tensors, res.history,
                     {"best_step": res.best_step, "steps_run": res.steps_run,
                      "batch_size_used": res.batch_size, "faiss_gpu": gpu})


def auto_codebook_size(n_items: int) -> int:
    """K for a catalogue of ``n_items``: the power of two at or above n/16 (about 16 items per
    first-level code), at most 256 (the default of catalogues of 4,096 items and more), at
    least 4 (2 for a catalogue of 2 or 3 items)."""
    k = 4
    while k < MAX_CODEBOOK and k * 16 < n_items:
        k *= 2
    return max(2, min(k, n_items))


def resolve_codebook(cfg: BuildSidsConfig, n_items: int, log) -> BuildSidsConfig:
    """``cfg`` with its codebook size set: the given one (refused when the catalogue is smaller)
    or the one chosen from the catalogue size (said in one line when it is not the default)."""
    if n_items < 2:
        raise ConfigError(f"build-sids needs at least 2 items and this catalogue has {n_items}")
    if cfg.codebook_size is not None:
        if cfg.codebook_size > n_items:
            raise ConfigError(f"--codebook-size {cfg.codebook_size} exceeds the {n_items} items; "
                              f"use a codebook size <= {n_items}, or leave it out to have one "
                              "chosen from the catalogue size")
        return cfg
    k = auto_codebook_size(n_items)
    if k != MAX_CODEBOOK and log:
        log(f"codebook size {k} per level for {n_items:,} items (chosen from the catalogue "
            "size; --codebook-size sets it)")
    return replace(cfg, codebook_size=k)


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


@writes_run
def run_step(run: Path, cfg: BuildSidsConfig, *, progress: bool = True, log=None) -> dict:
    """Embed, quantise, de-duplicate and write RUN/sids; return the stats. The manifest records
    the codebook size used (chosen from the catalogue size when ``cfg`` leaves it out)."""
    started = time.time()
    run = as_run(run)
    data = run.data
    items = data.items()
    cfg = resolve_codebook(cfg, len(items), log)
    # the SASRec table is checked before the (possibly long) embedding
    sasrec = cfg.collab_source == "sasrec"
    table = table_vectors(sasrec_item_table(run), cfg.collab_dim) if sasrec else None
    device = resolve_device(cfg.device)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    x, emb_info = embed_items(items, embedder=cfg.embedder, template=cfg.template,
                              batch_size=cfg.embed_batch_size, device=device, cache_dir=cache,
                              progress=progress)
    _warn_same_texts(items, cfg.template, log)
    text, collab = x, table
    if cfg.collab_dim and table is None:
        collab = collaborative_vectors(data.sequences(), len(items), cfg.collab_dim,
                                       seed=cfg.seed)
    if collab is not None:
        x = np.concatenate([x, cfg.collab_weight * collab], axis=1).astype(np.float32)
    t1 = time.perf_counter()
    q = quantize(x, cfg, device, progress)
    t2 = time.perf_counter()
    if cfg.dedup == "suffix":
        final = dd.dedup_suffix(q.codes)
    else:
        final = dd.dedup_reassign(q.codes, q.last_cost, cfg.codebook_size)
    dd.ensure_unique(final)
    stats = sid_stats(x, q, final, items, cfg)
    for line in sid_hints(stats):
        if log:
            log(f"hint: {line}")
    stats["seconds"] = {"embed": round(t1 - t0, 3), "quantize": round(t2 - t1, 3),
                        "embeddings_cached": emb_info["cached"]}
    stats["embedder"] = {k: emb_info[k] for k in ("embedder", "resolved", "dim", "cache_key")}
    stats["device"] = device

    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    with staged_step(run.path, STEP) as tmp:
        np.save(tmp / "embeddings.npy", text)
        if collab is not None:
            np.save(tmp / "collab.npy", collab)
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
                       inputs=run.digests("data", *(["sasrec"] if sasrec else [])),
                       dataset=data.manifest.dataset)
    return stats


def sid_hints(stats: dict) -> list[str]:
    """What to change when the SIDs came out poor: most items sharing a raw SID, or a level
    whose codes are mostly unused (the de-duplicated SIDs are unique either way)."""
    k, hints = stats["codebook_size"], []
    if stats["raw_collision_rate"] > 0.5:
        hints.append(f"{stats['raw_collision_rate']:.0%} of items share their raw SID: the "
                     "generator cannot tell them apart before de-duplication; try more "
                     "--levels or a larger --codebook-size")
    idle = [u["level"] for u in stats["level_usage"] if u["used"] < 0.5 * k]
    if idle:
        hints.append(f"level {', '.join(map(str, idle))} uses fewer than half of its {k} codes: "
                     f"a smaller --codebook-size (e.g. {max(2, k // 2)}) fits this catalogue "
                     "better")
    return hints


def _warn_same_texts(items: list[dict], template: str, log) -> None:
    """Say so when many items read the same (no metadata): text cannot tell them apart."""
    distinct = len({item_text(it, template) for it in items})
    if log and distinct < 0.5 * len(items):
        texts = "text" if distinct == 1 else "texts"
        log(f"warning: only {distinct:,} distinct item {texts} among {len(items):,} "
            "items (items without a title, brand, categories or description read the same): "
            "their SIDs can tell them apart only by co-occurrence; give the items metadata "
            "(data/README.md)")


def sasrec_item_table(run) -> np.ndarray:
    """(N, H) item rows of RUN/sasrec's embedding table (its padding row dropped), refused
    unless that model was trained on the run's current data."""
    from ..baselines.store import load_sasrec

    return load_sasrec(run).item.weight[1:].detach().numpy()
