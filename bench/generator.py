"""The generator next to most-popular and SASRec on one dataset, from one run directory.

Runs whatever of prepare -> build-sids -> train (generator) -> train --model sasrec is missing
in RUN (through the `sgrec` CLI, the code path users run), then `sgrec eval` on the test
targets, and writes the table with the training budgets and the paired bootstrap tests.

Usage:
  python bench/generator.py --data ../shared/data/amazon_scientific_2018 --run runs/sci
  python bench/generator.py --data ../shared/data/amazon_beauty_2014 --run runs/beauty \\
      --epochs 20 --out bench/results/generator_beauty.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def sgrec(*args: str) -> None:
    cmd = [sys.executable, "-m", "sgrec_cli.cli", *args]
    print("$ sgrec " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def done(run: Path, step: str) -> bool:
    return (run / step / "manifest.json").is_file()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=50, help="generator epoch budget")
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generator.json")
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

    stats = json.loads((args.run / "eval" / "stats.json").read_text(encoding="utf-8"))
    report = stats["splits"]["test"]  # with any earlier-evaluated models that still hold
    sft = json.loads((args.run / "sft" / "summary.json").read_text(encoding="utf-8"))
    sas = json.loads((args.run / "sasrec" / "summary.json").read_text(encoding="utf-8"))
    sft_cfg = json.loads((args.run / "sft" / "manifest.json").read_text("utf-8"))["config"]
    out = {
        "data": str(args.data), "run": run, "users": report["users"],
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                    "device": args.device},
        "budget": {
            "sft": {"epochs_run": sft["epochs_run"], "best_epoch": sft["best_epoch"],
                    "train_seconds": sft["seconds"], "config": sft_cfg},
            "sasrec": {"epochs_run": sas["epochs_run"], "best_epoch": sas["best_epoch"],
                       "seconds": sas["seconds"]},
        },
        "test": report["models"],
        "comparisons": report["comparisons"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
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
