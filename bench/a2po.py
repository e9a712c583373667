"""A2PO settings from one SFT checkpoint, same seed, then validation and test tables in one JSON.

Needs a run with data, sids, sft and judge (bench/generator.py, then `sgrec judge`), and SASRec
for the ranker settings. Each named setting is trained at each of ``--seeds`` by `sgrec train
--a2po --tag <prefix><name>[-s<seed>] --seed <seed>` (seed 0 keeps the plain tag; the code path
users run; an
interrupted setting is resumed exactly, a finished one is not retrained) and evaluated with the
SFT start by `sgrec eval` on the validation and the test targets of **all** users (history
excluded). The JSON has, per setting: its flags, the validation curve (start, peak and its step,
last), the kept state and its paired test against the start on validation, the mean share of
groups with a business signal (``biz_var_share``: the only groups with a gradient under biz and
a2po), hit fraction, sign agreement, lambda, KL (mean and last), groups/s and wall time,
validation and test R@{1,5,10,20} / N@{5,10,20}, and paired bootstraps over test users against
SFT (NDCG@10, Recall@10, Recall@20) and, for the ladder, between its steps (at seed 0).
With several seeds, ``seeds`` has per setting: each seed's kept step, its validation gain and
test figures against SFT, the mean over seeds, a paired bootstrap over test users of the
per-user metrics averaged over the seeds (``pooled_vs_sft``), and ``claim``: true only where
every seed's kept state beat SFT on validation (kept step > 0) and the pooled NDCG@10 gain has
p < 0.05.

Sets (``--settings`` takes set or setting names, comma-separated):
  ladder  biz, reward-sum, adv-sum, a2po (rho 0.05), a2po-rho1: the paper's ablation ladder
  recipe  business-only GRPO recipes (issue: RL that climbs): today's (32 groups per step),
          1,024 groups per step, latest examples, the NLL anchor, positive-only, the prefix
          reward, with sibling advantages
  long-recipe  64 steps x 1,024 groups: every prefix, the NLL anchor, the prefix reward,
          latest examples
  ranker  business-only at 1,024 groups per step: the rank reward (b1024) against the ranker
          reward (the run's SASRec) as log-probability, as rank within the group, and with the
          hit reward mixed in
  distill  the distill shape (the ranker's group softmax minus the policy's, unscaled) for 16
          and 64 steps
  next    the ranker reward on each user's next position (--examples next: the training items,
          no label), as log-probability and distill (16 steps), distill for 64 steps
  next-more  64 steps of the distill shape at each user's next position: lr 3e-4 (the
          recipe measured at three seeds), with the ranker's 16 best items in every group, lr
          1e-3, and the fused teacher (w 0.7)
  ranker-ladder  the paper's ladder on the ranker reward (log-probability, lr 3e-5, 16 steps
          of 1,024 groups): biz, reward-sum, adv-sum, a2po at rho 0.05 and 1
  fused   the fused teacher at Scientific's and Beauty's `sft@ranker` weights (0.7, 0.8)

Setting "default" is `train --a2po`'s defaults (the fused teacher at the weight `sft@ranker`
chooses); every other setting starts from the defaults before that change (the rank reward,
lr 1e-5, 32 groups a step, 300 steps), so a setting means what it meant when measured.

Usage (RUN_SCI: a Scientific run with data, sids, sft and judge; see bench/README.md):
  python bench/a2po.py --run RUN_SCI --settings recipe \
      --out bench/results/a2po_recipe_scientific.json
  python bench/a2po.py --run RUN_SCI --settings ladder --train-args "--ppo-epochs 4" \
      --prefix p4 --out bench/results/a2po_ladder_ppo4.json
  python bench/a2po.py --run RUN_SCI --settings ranker --seeds 0,1,2 \
      --out bench/results/a2po_ranker_scientific.json

--train-args go to every `sgrec train --a2po` call (after the setting's own flags, so they
override them); --prefix names the run folders RUN/a2po-<prefix><setting> so several benches can
sit in one run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np
from common import A2PO_BEFORE, RESULTS, read_json, sgrec_json, write_result
from generator_ablation import METRICS, split_result
from generator_ablation import compare as compare_ranks

from sgrec_cli.eval.bootstrap import paired_bootstrap
from sgrec_cli.eval.metrics import per_user_metrics

_BIG = ["--advantage", "biz", "--batch-users", "1024", "--steps", "16", "--eval-every", "4"]
# four times the budget: half a pass over Beauty's 131,413 training examples
_LONG = ["--advantage", "biz", "--batch-users", "1024", "--steps", "64", "--eval-every", "16"]
_SETTINGS: dict[str, list[str]] = {
    # the ladder (the budget of every rung: A2PO_BEFORE's, 32 groups x 300 steps, unless
    # --train-args says otherwise)
    "biz": ["--advantage", "biz"],
    "reward-sum": ["--advantage", "reward-sum"],
    "adv-sum": ["--advantage", "adv-sum"],
    "a2po": ["--advantage", "a2po"],
    "a2po-rho1": ["--advantage", "a2po", "--rho", "1"],
    # business-only recipes: 9,600 groups today, ~16,000 (two passes over Scientific's users'
    # latest examples) for the large-batch ones
    "today": ["--advantage", "biz", "--batch-users", "32", "--steps", "300", "--eval-every",
              "50", "--lr", "1e-5"],
    "b1024-lr1e-5": [*_BIG, "--lr", "1e-5"],
    "b1024": [*_BIG, "--lr", "1e-4"],
    "b1024-lr3e-5": [*_BIG, "--lr", "3e-5"],
    "b1024-latest": [*_BIG, "--lr", "1e-4", "--examples", "latest"],
    "b1024-nll": [*_BIG, "--lr", "1e-4", "--nll-weight", "1"],
    "b1024-pos": [*_BIG, "--lr", "1e-4", "--positive-only"],
    "b1024-prefix": [*_BIG, "--lr", "1e-4", "--business", "prefix"],
    "b1024-prefix-sibling": [*_BIG, "--lr", "1e-4", "--business", "prefix", "--sibling"],
    "long": [*_LONG, "--lr", "1e-4"],
    "long-nll": [*_LONG, "--lr", "1e-4", "--nll-weight", "1"],
    "long-prefix": [*_LONG, "--lr", "1e-4", "--business", "prefix"],
    "long-latest": [*_LONG, "--lr", "1e-4", "--examples", "latest"],
    "b1024-latest-nll-pos": [*_BIG, "--lr", "1e-4", "--examples", "latest", "--nll-weight", "1",
                             "--positive-only"],
    # the ranker reward: the run's SASRec scores every rollout item (a signal in every group)
    "b1024-ranker": [*_BIG, "--lr", "1e-4", "--business", "ranker"],
    "b1024-ranker-rank": [*_BIG, "--lr", "1e-4", "--business", "ranker", "--ranker-shape",
                          "rank"],
    "b1024-ranker-hit": [*_BIG, "--lr", "1e-4", "--business", "ranker", "--hit-weight", "1"],
    "b1024-ranker-lr3e-5": [*_BIG, "--lr", "3e-5", "--business", "ranker"],
    # the distill shape: the gap between the ranker's and the policy's softmax over the group,
    # unscaled (the policy learns the ranker's order of its own groups)
    "b1024-ranker-distill": [*_BIG, "--lr", "1e-4", "--business", "ranker", "--ranker-shape",
                             "distill"],
    "long-ranker-distill": [*_LONG, "--lr", "1e-4", "--business", "ranker", "--ranker-shape",
                            "distill"],
    # each user's next position (no label): neither model was fitted on what follows it
    "b1024-next": [*_BIG, "--lr", "1e-4", "--business", "ranker", "--examples", "next"],
    "b1024-next-distill": [*_BIG, "--lr", "1e-4", "--business", "ranker", "--ranker-shape",
                           "distill", "--examples", "next"],
    "long-next-distill": [*_LONG, "--lr", "1e-4", "--business", "ranker", "--ranker-shape",
                          "distill", "--examples", "next"],
    "long-next-distill-lr3e-4": [*_LONG, "--lr", "3e-4", "--business", "ranker",
                                 "--ranker-shape", "distill", "--examples", "next"],
    # the ladder on the ranker reward (log-probability, lr 3e-5): its biz rung is
    # b1024-ranker-lr3e-5
    "ranker-reward-sum": [*_BIG, "--lr", "3e-5", "--business", "ranker", "--advantage",
                          "reward-sum"],
    "ranker-adv-sum": [*_BIG, "--lr", "3e-5", "--business", "ranker", "--advantage", "adv-sum"],
    "ranker-a2po": [*_BIG, "--lr", "3e-5", "--business", "ranker", "--advantage", "a2po"],
    "ranker-a2po-rho1": [*_BIG, "--lr", "3e-5", "--business", "ranker", "--advantage", "a2po",
                         "--rho", "1"],
    # the teacher is the fused model at sft@ranker's weight on Scientific (0.7)
    "long-next-distill-w0.7": [*_LONG, "--lr", "3e-4", "--business", "ranker",
                               "--ranker-shape", "distill", "--ranker-weight", "0.7",
                               "--examples", "next"],
    # ... and at Beauty's (0.8)
    "long-next-distill-w0.8": [*_LONG, "--lr", "3e-4", "--business", "ranker",
                               "--ranker-shape", "distill", "--ranker-weight", "0.8",
                               "--examples", "next"],
    "long-next-distill-lr1e-3": [*_LONG, "--lr", "1e-3", "--business", "ranker",
                                 "--ranker-shape", "distill", "--examples", "next"],
    # the groups also hold the ranker's 16 best items the policy did not propose
    "long-next-distill-c16": [*_LONG, "--lr", "3e-4", "--business", "ranker",
                              "--ranker-shape", "distill", "--examples", "next",
                              "--ranker-candidates", "16"],
}
# every setting starts from the old defaults (its own flags override); "default" is today's
SETTINGS = {"default": [], **{name: [*A2PO_BEFORE, *flags] for name, flags in _SETTINGS.items()}}
SETS = {"ladder": ["biz", "reward-sum", "adv-sum", "a2po", "a2po-rho1"],
        "recipe": ["today", "b1024-lr1e-5", "b1024-lr3e-5", "b1024", "b1024-latest", "b1024-nll",
                   "b1024-pos", "b1024-prefix", "b1024-prefix-sibling", "b1024-latest-nll-pos"],
        "long-recipe": ["long", "long-nll", "long-prefix", "long-latest"],
        "ranker": ["b1024", "b1024-ranker", "b1024-ranker-rank", "b1024-ranker-hit"],
        "distill": ["b1024-ranker-distill", "long-ranker-distill"],
        "next": ["b1024-next", "b1024-next-distill", "long-next-distill"],
        "next-more": ["long-next-distill-lr3e-4", "long-next-distill-c16",
                      "long-next-distill-lr1e-3", "long-next-distill-w0.7"],
        "fused": ["long-next-distill-w0.7", "long-next-distill-w0.8"],
        "ranker-ladder": ["b1024-ranker-lr3e-5", "ranker-reward-sum", "ranker-adv-sum",
                          "ranker-a2po", "ranker-a2po-rho1"]}
LADDER_PAIRS = {("a2po", "biz"), ("biz", "sft"), ("a2po-rho1", "biz"), ("reward-sum", "biz"),
                ("ranker-a2po", "b1024-ranker-lr3e-5"), ("ranker-a2po-rho1", "b1024-ranker-lr3e-5"),
                ("ranker-reward-sum", "b1024-ranker-lr3e-5"),
                ("ranker-adv-sum", "b1024-ranker-lr3e-5")}
DIAG = ("hit_fraction", "biz_var_share", "sign_agreement", "positive_agreement", "mean_lambda",
        "mean_r_biz", "mean_r_sem", "kl", "clip_fraction", "nll")
COMPARED = ("ndcg@10", "recall@10", "recall@20")


def curve(rows: list[dict]) -> dict:
    """Start, peak (and its step) and last of the validation NDCG@10 curve."""
    pts = [(r["step"], r["valid_ndcg@10"]) for r in rows if "valid_ndcg@10" in r]
    peak = max(pts, key=lambda x: x[1])
    return {"start": round(pts[0][1], 4), "peak": round(peak[1], 4), "peak_step": peak[0],
            "last": round(pts[-1][1], 4), "last_step": pts[-1][0],
            "points": [(s, round(v, 4)) for s, v in pts]}


def diagnostics(rows: list[dict]) -> dict:
    steps = rows[1:]
    out = {}
    for key in DIAG:
        vals = [r[key] for r in steps if r.get(key) is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
    kls = [r["kl"] for r in steps if r.get("kl") is not None]
    out["kl_last"] = round(kls[-1], 4) if kls else None
    return out


def train(run: Path, tag: str, flags: list[str], args) -> dict:
    folder = run / f"a2po-{tag}"
    started = time.time()
    if not (folder / "manifest.json").is_file():
        resume = ["--resume"] if (run / f".a2po-{tag}.resume" / "state.json").is_file() else []
        sgrec_json("train", "--run", str(run), "--a2po", "--tag", tag, "--valid-users",
              str(args.valid_users), *flags, *shlex.split(args.train_args), *resume,
              "--no-progress", threads=args.threads)
    summary = read_json(folder / "summary.json")
    rows = [json.loads(x) for x in (folder / "train_log.jsonl").open()]
    return {"flags": flags, "train_args": args.train_args, "curve": curve(rows),
            "selection": summary.get("selection"), "best": summary["best"],
            "steps": summary["steps"], "groups_per_s": summary.get("groups_per_s"),
            "train_seconds": summary["seconds"], "wall_seconds_this_call":
            round(time.time() - started, 1), "diagnostics": diagnostics(rows)}


def compare(a: dict[int, int], b: dict[int, int], n_boot: int) -> dict:
    return compare_ranks(a, b, n_boot, COMPARED)


def tag_of(prefix: str, name: str, seed: int) -> str:
    """The run folder's tag of a setting at a seed (seed 0 keeps the plain name)."""
    return f"{prefix}{name}" + (f"-s{seed}" if seed else "")


def pooled(seed_ranks: list[dict[int, int]], sft: dict[int, int], n_boot: int) -> dict:
    """Paired bootstraps over test users of the per-user metrics averaged over the seeds'
    models against SFT's."""
    users = sorted(sft)
    if any(sorted(r) != users for r in seed_ranks):
        raise SystemExit("the seeds' models were evaluated on other users than SFT")
    per_seed = [per_user_metrics(np.array([r[u] for u in users])) for r in seed_ranks]
    base = per_user_metrics(np.array([sft[u] for u in users]))
    return {m: paired_bootstrap(np.mean([p[m] for p in per_seed], axis=0), base[m],
                                n_boot=n_boot, seed=0) for m in COMPARED}


def over_seeds(results: dict, name: str, tags: dict[int, str], ranks: dict, n_boot: int
               ) -> dict:
    """A setting over its seeds: each seed's kept step and figures, the mean, the pooled test
    and whether a claim may be made."""
    per_seed = {}
    for seed, tag in tags.items():
        r = results["runs"][tag]
        sel = r.get("selection") or {}
        per_seed[seed] = {"kept_step": sel.get("kept_step"), "valid_diff": sel.get("valid_diff"),
                          "valid_p": sel.get("p_value"),
                          **{f"test_{m}": r["test"][m] for m in COMPARED},
                          "test_ndcg@10_vs_sft": {k: r["test_vs_sft"]["ndcg@10"][k]
                                                  for k in ("diff", "p_value")},
                          "biz_var_share": r["diagnostics"]["biz_var_share"],
                          "kl": r["diagnostics"]["kl"], "groups_per_s": r["groups_per_s"]}
    mean = {f"test_{m}": round(float(np.mean([v[f"test_{m}"] for v in per_seed.values()])), 5)
            for m in COMPARED}
    pool = pooled([ranks[t] for t in tags.values()], ranks["sft"], n_boot)
    every_kept = all((v["kept_step"] or 0) > 0 for v in per_seed.values())
    claim = every_kept and pool["ndcg@10"]["diff"] > 0 and pool["ndcg@10"]["p_value"] < 0.05
    return {"seeds": sorted(tags), "per_seed": per_seed, "mean": mean, "pooled_vs_sft": pool,
            "every_seed_kept_a_state": every_kept, "claim": claim}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--settings", default="ladder", help="set or setting names, comma-separated")
    ap.add_argument("--seeds", default="0", help="seeds of every setting, comma-separated")
    ap.add_argument("--valid-users", type=int, default=0, help="0 = all (selection)")
    ap.add_argument("--train-args", default="", help="more `sgrec train --a2po` options")
    ap.add_argument("--prefix", default="", help="run folders RUN/a2po-<prefix><setting>")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "a2po.json")
    args = ap.parse_args()
    names: list[str] = []
    for part in args.settings.split(","):
        for name in SETS.get(part, [part]):
            if name not in SETTINGS:
                raise SystemExit(f"unknown setting {name!r}; sets: {', '.join(SETS)}; "
                                 f"settings: {', '.join(SETTINGS)}")
            if name not in names:
                names.append(name)
    seeds = sorted({int(x) for x in args.seeds.split(",") if x.strip()})
    if not seeds or min(seeds) < 0:
        raise SystemExit(f"--seeds {args.seeds!r}: give seeds >= 0, comma-separated")
    run = args.run
    results: dict = {"run": str(run), "settings": names, "seeds_run": seeds,
                     "protocol": "leave-one-out, all users, history excluded, 20 beams (+ fill); "
                                 "states chosen on validation users (--valid-users)",
                     "runs": {}}
    tags = {name: {seed: tag_of(args.prefix, name, seed) for seed in seeds} for name in names}
    for name in names:
        for seed, tag in tags[name].items():
            results["runs"][tag] = train(run, tag, [*SETTINGS[name], "--seed", str(seed)], args)
    models = {"sft": "sft", **{tag: f"a2po-{tag}" for name in names
                               for tag in tags[name].values()}}
    for split in ("valid", "test"):
        flags = [x for m in models.values() for x in ("--model", m)]
        sgrec_json("eval", "--run", str(run), *flags, "--split", split, "--device", args.device,
                   "--n-boot", "1", threads=args.threads)
    ranks = {}
    for label, model in models.items():
        entry = results["runs"].setdefault(label, {}) if label != "sft" else \
            results.setdefault("sft", {})
        for split in ("valid", "test"):
            entry[split], r = split_result(run, split, model)
            entry[split] = {k: round(v, 5) for k, v in entry[split].items() if k in METRICS}
            if split == "test":
                ranks[label] = r
    for tag in models:
        if tag != "sft":
            results["runs"][tag]["test_vs_sft"] = compare(ranks[tag], ranks["sft"], args.n_boot)
    results["test_pairs"] = [{"a": a, "b": b, **compare(ranks[a], ranks[b], args.n_boot)}
                             for a, b in sorted(LADDER_PAIRS) if a in ranks and b in ranks]
    if len(seeds) > 1:
        results["seeds"] = {name: over_seeds(results, name, tags[name], ranks, args.n_boot)
                            for name in names}
    write_result(args.out, results, threads=args.threads, device=args.device)
    s = results["sft"]["test"]
    print(f"{'sft':24s} test N@10 {s['ndcg@10']:.4f} R@20 {s['recall@20']:.4f}")
    for tag in models:
        if tag == "sft":
            continue
        r = results["runs"][tag]
        c = r["test_vs_sft"]
        print(f"{tag:24s} test N@10 {r['test']['ndcg@10']:.4f} "
              f"({c['ndcg@10']['diff']:+.4f}, p={c['ndcg@10']['p_value']:.3f}) "
              f"R@20 {r['test']['recall@20']:.4f} ({c['recall@20']['diff']:+.4f}, "
              f"p={c['recall@20']['p_value']:.3f}) valid {r['curve']['start']:.4f} -> peak "
              f"{r['curve']['peak']:.4f}@{r['curve']['peak_step']} last {r['curve']['last']:.4f} "
              f"kept step {(r.get('selection') or {}).get('kept_step')} "
              f"biz variance {r['diagnostics']['biz_var_share']}")
    for name, agg in results.get("seeds", {}).items():
        p = agg["pooled_vs_sft"]["ndcg@10"]
        print(f"{name:24s} seeds {agg['seeds']}: mean test N@10 {agg['mean']['test_ndcg@10']:.4f}"
              f", pooled {p['diff']:+.4f} p={p['p_value']:.3f}, every seed kept a state: "
              f"{agg['every_seed_kept_a_state']}, claim: {agg['claim']}")


if __name__ == "__main__":
    main()
