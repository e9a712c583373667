"""The SID generator fused with the run's SASRec: does the pair rank above SASRec alone?

Each user's candidates are the generator's ``--num-beams`` beams and SASRec's ``--num-beams``
best items, history excluded; each candidate is scored

    (1 - w) * log p_gen(i) + w * log p_SASRec(i)

(``log p_gen``: the item's SID log-probability, teacher-forced for SASRec's candidates as the
hybrid score does; ``log p_SASRec``: SASRec's softmax over the catalogue). w = 0 is the
generator's own ranking, w = 1 SASRec's. The weight is chosen on all validation users by
NDCG@10, then the test users compare the fused ranking at that weight with w = 0 and w = 1
(paired bootstrap). Same data, same SIDs: RUN must hold sft and sasrec.

Usage:
  python bench/ranker_fusion.py --run RUN --out bench/results/ranker_fusion_scientific.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
K = 10


@torch.no_grad()
def candidates(g, sasrec, histories, num_beams: int, batch: int):
    """Per user: items (U, C), log p_gen, log p_SASRec, ok (U, C): ``hybrid_candidates`` with
    SASRec's catalogue log-probabilities as the dense half, history items not ok."""
    from sgrec_cli.baselines.sasrec import catalogue_log_probs
    from sgrec_cli.generator.hybrid import hybrid_candidates

    parts = []
    model = g.model
    device = next(model.parameters()).device
    tokens = torch.as_tensor(g.vocab.code_tokens(g.codes), device=device)
    for start in range(0, len(histories), batch):
        hist = histories[start:start + batch]
        ids, mask = g.vocab.encode_history(hist, g.codes, g.max_history,
                                           per_item=model.per_item)
        cand, gen, dense, ok = hybrid_candidates(
            model, ids.to(device), mask.to(device), g.trie, g.vocab, num_beams, exclude=hist,
            dense=catalogue_log_probs(sasrec, hist).to(device), item_tokens=tokens)
        seen = torch.stack([torch.isin(cand[b], torch.as_tensor(list(h), device=device))
                            for b, h in enumerate(hist)])
        parts.append((cand.cpu(), gen.cpu(), dense.cpu(), (ok & ~seen).cpu()))
    return [torch.cat([p[i] for p in parts]) for i in range(4)]


def ndcg_at(cand, weight: float, targets: np.ndarray) -> dict[str, np.ndarray]:
    from sgrec_cli.eval.metrics import per_user_metrics, ranks_of_targets
    from sgrec_cli.generator.hybrid import rank_candidates

    items, _ = rank_candidates(*cand, weight, 2 * K)
    return per_user_metrics(ranks_of_targets(items.numpy(), targets), ks=(K, 2 * K))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default="sft")
    ap.add_argument("--num-beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from sgrec_cli.baselines.store import load_sasrec
    from sgrec_cli.eval.bootstrap import paired_bootstrap
    from sgrec_cli.generator.store import load_generator_step
    from sgrec_cli.rundir import Run

    run = Run(args.run)
    g = load_generator_step(run, args.model, "cpu")
    sasrec = load_sasrec(run)
    per_split, t0 = {}, time.perf_counter()
    for split in ("valid", "test"):
        ex = run.data.split(split)
        cand = candidates(g, sasrec, [e.history for e in ex], args.num_beams, args.batch)
        targets = np.asarray([e.target for e in ex], dtype=np.int64)
        per_split[split] = {w: ndcg_at(cand, w, targets) for w in WEIGHTS}
    curve = {str(w): round(float(m[f"ndcg@{K}"].mean()), 4)
             for w, m in per_split["valid"].items()}
    chosen = max(WEIGHTS, key=lambda w: per_split["valid"][w][f"ndcg@{K}"].mean())
    test = per_split["test"]
    result = {
        "run": str(args.run), "model": args.model, "num_beams": args.num_beams,
        "valid_ndcg@10_by_weight": curve, "chosen_weight": chosen,
        "test_by_weight": {str(w): {k: round(float(v.mean()), 4) for k, v in m.items()}
                           for w, m in test.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for name, w in (("vs_sasrec", 1.0), ("vs_generator", 0.0)):
        result[name] = {metric: paired_bootstrap(test[chosen][metric], test[w][metric])
                        for metric in (f"ndcg@{K}", f"recall@{2 * K}")}
    write_result(args.out, result, threads=args.threads)
    print({k: result[k] for k in ("valid_ndcg@10_by_weight", "chosen_weight")})
    print(result["test_by_weight"][str(chosen)], result["test_by_weight"]["1.0"],
          result["test_by_weight"]["0.0"])
    for name in ("vs_sasrec", "vs_generator"):
        r = result[name][f"ndcg@{K}"]
        print(name, round(r["diff"], 4), [round(r["ci_low"], 4), round(r["ci_high"], 4)],
              r["p_value"])


if __name__ == "__main__":
    main()
