"""The generator next to most-popular and SASRec on one dataset, from one run directory.

Runs whatever of prepare -> build-sids -> train (generator) -> train --model sasrec is missing
in RUN (through the `sgrec` CLI, the code path users run), then `sgrec eval` on the test
targets, and writes the table with the training budgets and the paired bootstrap tests.

Usage (DATA: the folder of raw datasets; RUN_SCI, RUN_BEAUTY: run folders; see bench/README.md):
  python bench/generator.py --data DATA/amazon_scientific_2018 --run RUN_SCI \\
      --out bench/results/generator_scientific.json
  python bench/generator.py --data DATA/amazon_beauty_2014 --run RUN_BEAUTY \\
      --epochs 20 --out bench/results/generator_beauty.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, done, read_json, sgrec, write_result

COLS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=50, help="generator epoch budget")
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "generator.json")
    args = ap.parse_args()
    run = str(args.run)
    if not done(args.run, "data"):
        sgrec("prepare", str(args.data), "--run", run)
    if not done(args.run, "sids"):
        sgrec("build-sids", "--run", run, "--no-progress")
    if not done(args.run, "sft"):
        resume = ["--resume"] if (args.run / "sft" / "checkpoint").is_dir() else []
        sgrec("train", "--run", run, "--epochs", str(args.epochs), "--patience",
              str(args.patience), "--device", args.device, *resume)
    if not done(args.run, "sasrec"):
        sgrec("train", "--run", run, "--model", "sasrec", "--epochs", "200", "--patience", "10")
    sgrec("eval", "--run", run, "--model", "sft", "--model", "sasrec", "--model", "popular",
          "--device", args.device, "--json")

    stats = read_json(args.run / "eval" / "stats.json")
    report = stats["splits"]["test"]  # with any earlier-evaluated models that still hold
    sft = read_json(args.run / "sft" / "summary.json")
    sas = read_json(args.run / "sasrec" / "summary.json")
    sft_cfg = read_json(args.run / "sft" / "manifest.json")["config"]
    out = {
        "data": str(args.data), "run": run, "users": report["users"],
        "budget": {
            "sft": {"epochs_run": sft["epochs_run"], "best_epoch": sft["best_epoch"],
                    "train_seconds": sft["seconds"], "config": sft_cfg},
            "sasrec": {"epochs_run": sas["epochs_run"], "best_epoch": sas["best_epoch"],
                       "seconds": sas["seconds"]},
        },
        "test": report["models"],
        "comparisons": report["comparisons"],
    }
    write_result(args.out, out, device=args.device)
    print("| model | " + " | ".join(COLS) + " |")
    print("| --- |" + " ---: |" * len(COLS))
    for name, m in report["models"].items():
        print(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in COLS) + " |")
    for c in report["comparisons"]:
        print(f"{c['a']} vs {c['b']} {c['metric']}: {c['diff']:+.4f} "
              f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p={c['p_value']:.4f}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
