"""How much each model of a run has fitted its own training examples: NDCG@10 of the run's SASRec
and generator on sampled training examples (every prefix, and each user's latest) against the
validation targets of all users, history excluded as `sgrec eval` does.

A ranker whose NDCG@10 on the training examples is several times its validation figure restates
the training label there: its business reward on those groups is the SFT label again. This is
why `train --a2po --examples next` exists (groups at each user's next position, no label).

Usage (RUN: a run with data, sids, sft and sasrec):
  python bench/fit_gap.py --run RUN --out bench/results/fit_gap_scientific.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import RESULTS, write_result


def sasrec_ranks(model, examples) -> np.ndarray:
    """1-based ranks of the targets in SASRec's top 10, history excluded (0 = a miss)."""
    from sgrec_cli.baselines.sasrec import recommend
    from sgrec_cli.eval.metrics import ranks_of_targets

    top = recommend(model, [e.history for e in examples], 10, exclude_history=True)
    return ranks_of_targets(top, np.asarray([e.target for e in examples]))


def generator_ranks(gen, examples, num_beams: int) -> np.ndarray:
    from sgrec_cli.eval.metrics import ranks_of_targets
    from sgrec_cli.generator.decode import generator_top_items

    ranks = []
    for i in range(0, len(examples), 512):
        part = examples[i:i + 512]
        top, _ = generator_top_items(gen, [list(e.history) for e in part], 10, num_beams,
                                     exclude_history=True, fill=True)
        ranks.append(ranks_of_targets(top, np.asarray([e.target for e in part])))
    return np.concatenate(ranks)


def ndcg10(ranks: np.ndarray) -> float:
    from sgrec_cli.eval.metrics import ndcg_at_k

    return ndcg_at_k(np.asarray(ranks), 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default="sft", help="the generator step to measure")
    ap.add_argument("--train-examples", type=int, default=3000, help="sampled per kind")
    ap.add_argument("--num-beams", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "fit_gap.json")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from sgrec_cli.baselines.store import load_sasrec
    from sgrec_cli.generator.store import load_generator_step
    from sgrec_cli.rundir import Run

    run = Run(args.run)
    train = run.data.training_split("bench fit_gap")
    valid = run.data.split("valid")
    rng = np.random.default_rng(args.seed)
    last: dict[int, int] = {}
    for i, e in enumerate(train):
        last[e.user] = i
    n = args.train_examples
    sets = {"train (every prefix)": [train[i] for i in rng.choice(len(train), min(n, len(train)),
                                                                  replace=False)],
            "train (latest)": [train[i] for i in rng.choice(sorted(last.values()),
                                                            min(n, len(last)), replace=False)],
            "valid (all users)": list(valid)}
    models = {"sasrec": (load_sasrec(run), sasrec_ranks),
              args.model: (load_generator_step(run, args.model, "cpu"),
                           lambda g, ex: generator_ranks(g, ex, args.num_beams))}
    table: dict = {}
    for name, (m, ranks) in models.items():
        for label, ex in sets.items():
            t0 = time.perf_counter()
            table.setdefault(name, {})[label] = {
                "users": len(ex), "ndcg@10": round(ndcg10(ranks(m, ex)), 5),
                "seconds": round(time.perf_counter() - t0, 1)}
        v = table[name]["valid (all users)"]["ndcg@10"]
        table[name]["train (every prefix) / valid"] = round(
            table[name]["train (every prefix)"]["ndcg@10"] / v, 2)
    write_result(args.out, {"run": str(args.run), "model": args.model, "seed": args.seed,
                            "ndcg@10": table}, threads=args.threads)
    for name, rows in table.items():
        print(name, {k: (v["ndcg@10"] if isinstance(v, dict) else v) for k, v in rows.items()})


if __name__ == "__main__":
    main()
