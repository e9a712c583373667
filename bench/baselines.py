"""Most-popular and SASRec on the leave-one-out test targets of a prepared run.

Usage: python bench/baselines.py --run runs/sci [--out bench/results/baselines.json]
(prepare the run first: sgrec prepare ../shared/data/amazon_scientific_2018 --run runs/sci)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sgrec_cli.baselines.popularity import MostPopular  # noqa: E402
from sgrec_cli.baselines.sasrec import SASRecConfig, recommend, train_sasrec  # noqa: E402
from sgrec_cli.data.store import load_data  # noqa: E402
from sgrec_cli.eval.metrics import per_user_metrics, ranks_of_targets, summarize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "baselines.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_data(args.run)
    seqs, n = data.sequences(), len(data.items())
    valid, test = data.split("valid"), data.split("test")
    targets = np.array([e.target for e in test])
    test_h = [e.history for e in test]

    t0 = time.perf_counter()
    pop = MostPopular().fit(data.split("train"), seqs, n_items=n)
    pop_top = pop.recommend(test_h, 20, exclude_history=True)
    pop_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg = SASRecConfig(seed=args.seed, max_len=data.max_history)
    model, hist = train_sasrec(seqs, n, [e.history for e in valid], [e.target for e in valid],
                               cfg, log=lambda r: print(r, file=sys.stderr, flush=True))
    sas_top = recommend(model, test_h, 20)
    sas_s = time.perf_counter() - t0
    best = max(hist, key=lambda r: r["ndcg@10"])
    report = {
        "run": str(args.run), "dataset": data.manifest.dataset, "users": len(test),
        "protocol": "leave-one-out test targets, full ranking, history items excluded",
        "most_popular": {"test": summarize(per_user_metrics(ranks_of_targets(pop_top, targets))),
                         "seconds": round(pop_s, 2)},
        "sasrec": {"test": summarize(per_user_metrics(ranks_of_targets(sas_top, targets))),
                   "config": cfg.__dict__, "best_epoch": best["epoch"],
                   "epochs_run": hist[-1]["epoch"], "best_valid": best,
                   "seconds": round(sas_s, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name in ("most_popular", "sasrec"):
        m = report[name]["test"]
        print(f"{name:13s} R@5 {m['recall@5']:.4f} N@5 {m['ndcg@5']:.4f} "
              f"R@10 {m['recall@10']:.4f} N@10 {m['ndcg@10']:.4f}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
