"""A2PO and its ablations from one SFT checkpoint, same seed and budget, then the test table.

Needs a run with data, sids, sft and judge (bench/generator.py, then `sgrec judge`). Trains
`biz` (GRPO on the business reward: MiniOneRec's recipe), `reward-sum`, `adv-sum`, `a2po`
(rho 0.05, the paper's default) and `a2po` with rho 1 into RUN/a2po-<name>, evaluates them with
the SFT start on the test targets (history excluded), and writes the table, the paired bootstrap
tests, and each run's training diagnostics (best validation step, hit fraction, sign agreement,
lambda, KL, clip fraction, groups/s and the time split).

Usage:
  python bench/a2po.py --run runs/sci --out bench/results/a2po_scientific.json
  python bench/a2po.py --run runs/sci --train-args "--ppo-epochs 4 --beta 0.05" --jobs 2 \
      --prefix p4 --out bench/results/a2po_scientific_ppo4.json

--train-args go to every `sgrec train --a2po` call (the budget shared by all variants);
--jobs N trains N variants at once, one thread each (2 on a 2-core machine); --prefix names the
run folders RUN/a2po-<prefix><variant> so several ablations can sit in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"biz": ["--advantage", "biz"], "reward-sum": ["--advantage", "reward-sum"],
            "adv-sum": ["--advantage", "adv-sum"], "a2po": ["--advantage", "a2po"],
            "a2po-rho1": ["--advantage", "a2po", "--rho", "1"]}
DIAG = ("hit_fraction", "biz_var_share", "sign_agreement", "mean_lambda", "mean_r_biz",
        "mean_r_sem", "kl", "clip_fraction")


def sgrec_json(*args: str, threads: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "sgrec_cli.cli", *args, "--json"]
    print("$ sgrec " + " ".join(args), file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(res.stdout)


def diagnostics(run: Path, name: str) -> dict:
    rows = [json.loads(x) for x in (run / f"a2po-{name}" / "train_log.jsonl").open()][1:]
    out = {}
    for key in DIAG:
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
    out["valid_ndcg@10"] = [(r["step"], round(r["valid_ndcg@10"], 4)) for r in rows
                            if "valid_ndcg@10" in r]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", default="1e-5")
    ap.add_argument("--group-size", default="16")
    ap.add_argument("--valid-users", default="1000")
    ap.add_argument("--train-args", default="", help="more `sgrec train --a2po` options")
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    ap.add_argument("--prefix", default="", help="run folders RUN/a2po-<prefix><variant>")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "a2po.json")
    args = ap.parse_args()
    run = str(args.run)
    extra_args = shlex.split(args.train_args)
    results: dict = {"budget": {"steps": args.steps, "lr": args.lr, "group_size":
                                args.group_size, "batch_users": 32, "seed": 0,
                                "train_args": args.train_args}, "runs": {}}

    def train(item):
        name, extra = item
        tag = args.prefix + name
        summary = sgrec_json("train", "--run", run, "--a2po", *extra, "--tag", tag,
                             "--steps", str(args.steps), "--lr", args.lr, "--group-size",
                             args.group_size, "--valid-users", args.valid_users, *extra_args,
                             "--no-progress", threads=1 if args.jobs > 1 else None)
        return name, {**summary, "diagnostics": diagnostics(args.run, tag)}

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results["runs"] = dict(pool.map(train, VARIANTS.items()))
    tags = {f"a2po-{args.prefix}{n}": f"a2po-{n}" for n in VARIANTS}  # folder -> table name
    models = ["sft", *tags]
    report = sgrec_json("eval", "--run", run, *(x for m in models for x in ("--model", m)))
    cols = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
    results["test"] = {tags.get(m, m): {c: round(report["models"][m][c], 4) for c in cols}
                       for m in models}
    wanted = {("a2po-a2po", "a2po-biz"), ("a2po-a2po", "sft"), ("a2po-biz", "sft"),
              ("a2po-a2po-rho1", "a2po-biz")}
    comps = []
    for c in report["comparisons"]:
        c = {**c, "a": tags.get(c["a"], c["a"]), "b": tags.get(c["b"], c["b"])}
        if (c["a"], c["b"]) in wanted or (c["b"], c["a"]) in wanted:
            comps.append(c)
    results["comparisons"] = comps
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for m, row in results["test"].items():
        print(m, row)
    for c in results["comparisons"]:
        print(c["a"], "vs", c["b"], c["metric"], round(c["diff"], 4), c["p_value"])


if __name__ == "__main__":
    main()
