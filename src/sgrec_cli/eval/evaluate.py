"""`sgrec eval`: full-ranking leave-one-out metrics for several models on one split, per-user
results, and paired bootstrap comparisons (DESIGN §3)."""

from __future__ import annotations

import time
from itertools import combinations
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_json, staged_step, write_jsonl, write_manifest
from ..data.store import PreparedData, load_data
from ..errors import ConfigError
from ..recommend import MODELS, known_model, top_items
from .bootstrap import paired_bootstrap
from .metrics import (
    DEFAULT_KS,
    coverage,
    invalid_and_duplicate_rate,
    per_user_metrics,
    ranks_of_targets,
    summarize,
)

STEP = "eval"
K_MAX = max(DEFAULT_KS)


def predict(run: Path, data: PreparedData, model: str, histories: list,
            num_beams: int = 20, device: str = "cpu") -> np.ndarray:
    """Top-20 item indices (U, 20) of one model for the given histories. History items are
    excluded for every model: the generator searches ``num_beams`` + (longest history) beams so
    that 20 items remain once they are dropped, as SASRec ranks all non-history items."""
    items, _ = top_items(run, data, model, histories, K_MAX, num_beams=num_beams, device=device,
                         fill=True)
    return items


def evaluate(run: Path, models: list[str], split: str = "test", n_boot: int = 10_000,
             seed: int = 0, num_beams: int = 20, device: str = "cpu") -> dict:
    started = time.time()
    if not isinstance(num_beams, int) or num_beams < K_MAX:
        raise ConfigError(f"--num-beams {num_beams!r} must be an integer >= {K_MAX}: the "
                          f"metrics go to @{K_MAX}")
    from ..device import resolve_device

    device = resolve_device(device)
    if split not in ("test", "valid"):
        raise ConfigError(f"--split {split!r} must be test or valid")
    for m in models:
        if not known_model(m):
            raise ConfigError(f"--model {m!r} is not known; use one of: {', '.join(MODELS)}")
    data = load_data(run)
    examples = data.split(split)
    histories = [e.history for e in examples]
    targets = np.array([e.target for e in examples])
    n_items = len(data.items())
    results, per_user, rows = {}, {}, {}
    for m in models:
        t0 = time.perf_counter()
        topk = predict(run, data, m, histories, num_beams=num_beams, device=device)
        ranks = ranks_of_targets(topk, targets)
        per_user[m] = per_user_metrics(ranks)
        results[m] = {**summarize(per_user[m]), **invalid_and_duplicate_rate(topk, n_items),
                      "coverage@10": coverage(topk, n_items, 10),
                      "seconds": round(time.perf_counter() - t0, 2)}
        rows[m] = [{"user": e.user, "target": e.target, "rank": int(r),
                    "top20": [int(i) for i in t]}
                   for e, r, t in zip(examples, ranks, topk, strict=True)]
    comparisons = [
        {"a": a, "b": b, "metric": metric,
         **paired_bootstrap(per_user[a][metric], per_user[b][metric], n_boot=n_boot, seed=seed)}
        for a, b in combinations(models, 2) for metric in ("ndcg@10", "recall@10")]
    report = {"split": split, "users": len(examples), "models": results,
              "comparisons": comparisons}
    with staged_step(run, STEP) as tmp:
        for m in models:
            write_jsonl(tmp / f"{m}.{split}.jsonl", rows[m])
        atomic_write_json(tmp / "stats.json", report)
        write_manifest(tmp, step=STEP, config={"models": models, "split": split,
                                               "n_boot": n_boot, "num_beams": num_beams},
                       seed=seed, started=started,
                       inputs={"data/manifest.json": data.manifest.digest},
                       dataset=data.manifest.dataset)
    return report
