"""`sgrec train --model sasrec`: RUN/data -> RUN/sasrec (the SASRec baseline), with a manifest
tying the model to the data it saw. The history length is RUN/data's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..artifacts import atomic_write_json, staged_step, write_manifest
from ..rundir import Run, as_run
from ..runlock import writes_run
from .config import SASRecConfig
from .sasrec import train_sasrec

STEP = "sasrec"


@writes_run
def run_step(run: Run | Path, cfg: SASRecConfig, *,
             on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train SASRec with early stopping on validation NDCG@10 and write RUN/sasrec."""
    from safetensors.torch import save_file

    started = time.time()
    run = as_run(run)
    data = run.data
    if cfg.max_len is None:
        cfg = replace(cfg, max_len=data.max_history)
    data.training_split("train --model sasrec")
    seqs, n = data.sequences(), len(data.items())
    valid = data.split("valid")
    model, hist = train_sasrec(seqs, n, [e.history for e in valid], [e.target for e in valid],
                               cfg, log=on_epoch)
    best = max(hist, key=lambda r: r["ndcg@10"])
    summary = {"best_epoch": best["epoch"], "best_valid": best, "epochs_run": hist[-1]["epoch"],
               "max_history": cfg.max_len, "seconds": round(time.time() - started, 1)}
    with staged_step(run.path, STEP) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        atomic_write_json(tmp / "config.json", {"n_items": n, **cfg.to_dict()})
        with open(tmp / "train_log.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in hist)
        atomic_write_json(tmp / "summary.json", summary)
        write_manifest(tmp, step=STEP, config=cfg.to_dict(), seed=cfg.seed, started=started,
                       inputs=run.digests("data"), dataset=data.manifest.dataset)
    run.forget(STEP)
    return summary
