"""Most-popular and SASRec on the leave-one-out test targets of a prepared run.

Through the `sgrec` CLI (the code path users run): `sgrec train --model sasrec` writes
RUN/sasrec (skipped with --reuse when it is there), then `sgrec eval --model popular --model
sasrec` scores both on the test targets of all users (full ranking, history items excluded).
The JSON has both models' test metrics and seconds, and SASRec's config, best and last epochs
and best validation row (from RUN/sasrec), and eval's paired bootstrap between the two.

Usage (DATA: the folder of raw datasets, RUN: a run folder; see bench/README.md):
  sgrec prepare DATA/amazon_scientific_2018 --run RUN
  python bench/baselines.py --run RUN [--seed 0] [--out bench/results/baselines.json]
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from common import RESULTS, done, read_json, sgrec_json, write_result

# sgrec eval's entries that are not metrics of the ranking
NOT_METRICS = ("seconds", "computed_from")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=RESULTS / "baselines.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-args", default="",
                    help="more `sgrec train --model sasrec` options, e.g. '--epochs 1'")
    ap.add_argument("--reuse", action="store_true",
                    help="use RUN/sasrec when it is there instead of training it again")
    ap.add_argument("--n-boot", type=int, default=10_000, help="eval's bootstrap resamples")
    args = ap.parse_args()
    run = str(args.run)
    if not (args.reuse and done(args.run, "sasrec")):
        sgrec_json("train", "--run", run, "--model", "sasrec", "--seed", str(args.seed),
                   *shlex.split(args.train_args))
    ev = sgrec_json("eval", "--run", run, "--model", "popular", "--model", "sasrec",
                    "--split", "test", "--n-boot", str(args.n_boot))
    summary = read_json(args.run / "sasrec" / "summary.json")
    manifest = read_json(args.run / "sasrec" / "manifest.json")
    data = read_json(args.run / "data" / "manifest.json")

    def test(model: str) -> dict:
        return {k: v for k, v in ev["models"][model].items() if k not in NOT_METRICS}

    report = {
        "run": run, "dataset": data.get("dataset"), "users": ev["users"],
        "protocol": "leave-one-out test targets, full ranking, history items excluded",
        "most_popular": {"test": test("popular"),
                         "seconds": ev["models"]["popular"]["seconds"]},
        # seconds: training (RUN/sasrec) plus ranking the test users (eval)
        "sasrec": {"test": test("sasrec"), "config": manifest["config"],
                   "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
                   "best_valid": summary["best_valid"],
                   "seconds": round(summary["seconds"] + ev["models"]["sasrec"]["seconds"], 1)},
        "comparisons": [c for c in ev["comparisons"]
                        if {c["a"], c["b"]} == {"popular", "sasrec"}],
    }
    write_result(args.out, report)
    for name in ("most_popular", "sasrec"):
        m = report[name]["test"]
        print(f"{name:13s} R@5 {m['recall@5']:.4f} N@5 {m['ndcg@5']:.4f} "
              f"R@10 {m['recall@10']:.4f} N@10 {m['ndcg@10']:.4f}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
