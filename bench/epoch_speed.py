"""Seconds per training epoch of SASRec and of generator objectives, back to back.

Each model trains for a few epochs through the `sgrec` CLI (the code path users run) in its own
copy of RUN's data/ and sids/, one after the other on the same machine, the same threads and
the same data; an epoch's seconds include its validation pass over all validation users (the
generator's logged ``seconds``; SASRec's ``summary.json`` seconds over its epochs). The
ratio is each model's mean epoch over SASRec's.

Usage (RUN: a run with data and sids; see bench/README.md):
  python bench/epoch_speed.py --run RUN --models sasrec:3,sequence:3,prefix:1 \\
      --out bench/results/epoch_speed_beauty.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import RESULTS, read_json, sgrec, write_result

from sgrec_cli.artifacts import read_jsonl

# name -> `sgrec train` flags
MODELS = {
    "sasrec": ["--model", "sasrec", "--patience", "1000"],
    # 4 + 4 layers: the generator's default before 2 + 2
    "sequence": ["--objective", "sequence", "--num-layers", "4"],
    "prefix": ["--objective", "prefix", "--num-layers", "4"],
    "sequence-small": ["--objective", "sequence", "--num-layers", "2"],
    "sequence-small-item": ["--objective", "sequence", "--num-layers", "2", "--item-weight", "1"],
    "sequence-hybrid-ids": ["--objective", "sequence", "--score", "hybrid", "--item-ids",
                            "--num-layers", "4"],
}


def seconds_per_epoch(run: Path, name: str) -> tuple[float, int]:
    if name == "sasrec":
        s = read_json(run / "sasrec" / "summary.json")
        return s["seconds"] / s["epochs_run"], s["epochs_run"]
    log = read_jsonl(run / "sft" / "train_log.jsonl")
    return sum(r["seconds"] for r in log) / len(log), len(log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--models", default="sasrec:3,sequence:3")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "epoch_speed.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            name, epochs = spec.split(":")
            run = Path(tmp) / name
            for step in ("data", "sids"):
                shutil.copytree(args.run / step, run / step)
            extra = [] if name == "sasrec" else ["--no-progress"]
            sgrec("train", "--run", str(run), *MODELS[name], "--epochs", epochs, *extra,
                  threads=args.threads)
            sec, n = seconds_per_epoch(run, name)
            rows.append({"model": name, "epochs": n, "seconds_per_epoch": round(sec, 1)})
    base = next((r["seconds_per_epoch"] for r in rows if r["model"] == "sasrec"), None)
    for r in rows:
        r["ratio_to_sasrec"] = round(r["seconds_per_epoch"] / base, 2) if base else None
    write_result(args.out, {"run": str(args.run), "rows": rows}, threads=args.threads)
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
