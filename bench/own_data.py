"""A newcomer's own data through the pipeline with the defaults: the SIDs (raw collisions, codes
used per level, reconstruction) and, unless --sids-only, the generator, SASRec and most-popular
on all test users with paired bootstrap tests. One JSON row per call, appended to --out.

--src runs another source tree's `sgrec` (e.g. a checkout of the previous main) on the same
data, and --sids-args / --train-args add options, so that a before/after comparison comes from
one script; --against OTHER_RUN adds a paired bootstrap of this run's generator against that
run's (same data, so the same test users) on test NDCG@10 and Recall@20.

Usage (FOLDER: a CSV folder such as examples/shop, or a real dataset; RUN: a new folder):
  python bench/own_data.py --data examples/shop --run RUN --label defaults \\
      --out bench/results/own_data_shop.json
  python bench/own_data.py --data DATA/amazon_scientific_2018 --run RUN --sids-only \\
      --label new --out bench/results/sids_budget.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import common
import numpy as np
from common import read_json, sgrec, sgrec_json, write_json


def sid_row(stats: dict) -> dict:
    keys = ("items", "codebook_size", "raw_collision_rate", "items_moved_by_dedup",
            "relative_reconstruction_error", "best_step", "steps_run", "best_epoch",
            "epochs_run", "batch_size_used")
    coherence = stats.get("semantic_coherence_level1_leaf_category") or {}
    return {**{k: stats[k] for k in keys if k in stats},
            "codes_used": [u["used"] for u in stats["level_usage"]],
            "coherence_lift": coherence.get("lift"),
            "quantize_s": stats["seconds"]["quantize"]}


def per_user(run: Path, model: str = "sft") -> dict[str, np.ndarray]:
    """Per-user test NDCG@10 and Recall@20 of RUN/eval's ``model``, in user order."""
    from sgrec_cli.eval.metrics import per_user_metrics

    rows = sorted((json.loads(line) for line in
                   (run / "eval" / f"{model}.test.jsonl").read_text().splitlines()),
                  key=lambda r: r["user"])
    m = per_user_metrics(np.asarray([r["rank"] for r in rows]), ks=(10, 20))
    return {"ndcg@10": m["ndcg@10"], "recall@20": m["recall@20"]}


def against(run: Path, other: Path) -> dict:
    """This run's generator minus the other run's, paired over the same test users."""
    from sgrec_cli.eval.bootstrap import paired_bootstrap

    a, b = per_user(run), per_user(other)
    return {"other_run": str(other),
            **{k: paired_bootstrap(a[k], b[k]) for k in ("ndcg@10", "recall@20")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--src", type=Path, help="src/ of another source tree to run")
    ap.add_argument("--sids-args", default="", help="extra build-sids options")
    ap.add_argument("--train-args", default="", help="extra train options (the generator)")
    ap.add_argument("--sids-only", action="store_true")
    ap.add_argument("--against", type=Path, help="a finished run of the same data to compare")
    args = ap.parse_args()
    if args.src:
        common.SRC = args.src.resolve()
    run = str(args.run)
    sgrec("prepare", str(args.data), "--run", run)
    t0 = time.perf_counter()
    stats = sgrec_json("build-sids", "--run", run, "--no-progress",
                       *shlex.split(args.sids_args))
    row = {"label": args.label, "command": common.command_line(), "commit": common.git_commit(),
           "data": str(args.data), "src": str(common.SRC),
           "sids_args": args.sids_args, "train_args": args.train_args,
           "sids": sid_row(stats), "build_sids_s": round(time.perf_counter() - t0, 1)}
    if not args.sids_only:
        t0 = time.perf_counter()
        sft = sgrec_json("train", "--run", run, "--no-progress", *shlex.split(args.train_args))
        row["sft"] = {"best_epoch": sft["best_epoch"], "epochs_run": sft["epochs_run"],
                      "seconds": round(time.perf_counter() - t0, 1)}
        sgrec("train", "--run", run, "--model", "sasrec")
        report = sgrec_json("eval", "--run", run, "--model", "sft", "--model", "sasrec",
                            "--model", "popular")
        row["test"] = {m: {k: r[k] for k in ("ndcg@10", "recall@10", "recall@20")}
                       for m, r in report["models"].items()}
        row["users"] = report["users"]
        row["comparisons"] = [c for c in report["comparisons"] if c["metric"] == "ndcg@10"]
        if args.against:
            row["against"] = against(args.run, args.against)
    rows = read_json(args.out)["rows"] if args.out.is_file() else []
    rows = [r for r in rows if r["label"] != args.label] + [row]
    write_json(args.out, {**common.preamble(), "rows": rows})
    print(f"{args.label}: {row}")


if __name__ == "__main__":
    main()
