"""Generator ablation: each variant trained from one command, all written to one JSON.

The base run holds data/, sids/, SASRec, most-popular and the baseline generator (``sft`` in
BASE): the defaults before the item-input change, text-only SIDs and SID-token inputs (a
BASE built by this bench gets them through explicit flags; one it finds is used as it is).
The new default is the ``collab-items`` variant. Every variant gets its own run
folder BASE.variants/NAME that starts from copies of BASE's data/ and sids/ (or builds its own
SIDs when the variant names build-sids options), is trained through the `sgrec` CLI (the code
path users run; an interrupted variant resumes exactly) and evaluated with `sgrec eval` on the
validation and the test targets of **all** users. Checkpoints are chosen on all validation
users (``--valid-users 0``).

The JSON has, per variant: its flags, SIDs, epochs run, best epoch, seconds per epoch (training
plus the validation pass, from the training log), validation and test R@{1,5,10,20} /
N@{5,10,20} and coverage@10, and paired bootstraps over test users (NDCG@10, Recall@10) against
SASRec and against the baseline generator. A hybrid variant is also reported as its pure
generator (``NAME@generator``).

Usage (BASE_SCI: the Scientific base run, DATA: the folder of raw datasets; one thread per job
when two run at once; see bench/README.md):
  python bench/generator_ablation.py --base BASE_SCI --data DATA/amazon_scientific_2018 \\
      --variants items,items-text-hybrid --out bench/results/generator_ablation_scientific.json
  python bench/generator_ablation.py --base BASE_SCI --variants items --threads 1 --no-report
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from common import RESULTS, done, read_json, sgrec, write_result

from sgrec_cli.artifacts import read_jsonl
from sgrec_cli.eval.bootstrap import paired_bootstrap
from sgrec_cli.eval.metrics import per_user_metrics

# BASE's SIDs and generator: the defaults before the item-input change (text-only SIDs,
# SID-token inputs)
OLD_DEFAULT_SIDS = ["--collab-dim", "0"]
OLD_DEFAULT_TRAIN = ["--input", "tokens"]
# the generator's layers before 2 + 2 became the default: a variant that does not name its
# layers is trained with these, as it was when its results were recorded
LAYERS_BEFORE = ["--num-layers", "4"]
# name -> (train flags, build-sids flags or None for BASE's SIDs)
VARIANTS: dict[str, tuple[list[str], list[str] | None]] = {
    # the old default (text-only SIDs, SID-token inputs), retrained under this bench's protocol
    "tokens": (OLD_DEFAULT_TRAIN, None),
    "items": (["--input", "items"], None),
    "items-text": (["--input", "items", "--text"], None),
    "tokens-hybrid": (["--input", "tokens", "--score", "hybrid"], None),
    "items-hybrid": (["--input", "items", "--score", "hybrid"], None),
    "items-text-hybrid": (["--input", "items", "--text", "--score", "hybrid"], None),
    "rqkmeans-items": (["--input", "items"], ["--method", "rqkmeans"]),
    "rqkmeans-items-text-hybrid": (["--input", "items", "--text", "--score", "hybrid"],
                                   ["--method", "rqkmeans"]),
    "items-ids": (["--input", "items", "--item-ids"], None),
    "items-text-ids-hybrid": (["--input", "items", "--text", "--item-ids", "--score", "hybrid"],
                              None),
    # BARGE's size (2 layers) and SASRec's dropout (0.2), for a small dataset
    "items-text-ids-hybrid-small": (["--input", "items", "--text", "--item-ids", "--score",
                                     "hybrid", "--num-layers", "2", "--dropout", "0.2"], None),
    # the new default (collab SIDs, item inputs)
    "collab-items": (["--input", "items"], ["--collab-dim", "32"]),
    "collab-tokens": (["--input", "tokens"], ["--collab-dim", "32"]),
    # the new default plus a learned embedding of each item's distance from the end
    "collab-items-recency": (["--input", "items", "--recency"], ["--collab-dim", "32"]),
    "collab-items-text-ids-hybrid": (["--input", "items", "--text", "--item-ids", "--score",
                                      "hybrid"], ["--collab-dim", "32"]),
    "rqkmeans-collab-items": (["--input", "items"], ["--method", "rqkmeans", "--collab-dim", "32"]),
    # the collaborative vectors at twice the text's scale (4x its share of the squared norm)
    "collab-w2-items": (["--input", "items"], ["--collab-dim", "32", "--collab-weight", "2"]),
    "collab-w05-items": (["--input", "items"], ["--collab-dim", "32", "--collab-weight", "0.5"]),
    # the SASRec baseline's item table (all 64 dims) instead of co-occurrence
    "sasrec-collab-items": (["--input", "items"], ["--collab-dim", "64", "--collab-source",
                                                   "sasrec"]),
    "sasrec-collab-items-text-ids-hybrid": (["--input", "items", "--text", "--item-ids",
                                             "--score", "hybrid"],
                                            ["--collab-dim", "64", "--collab-source", "sasrec"]),
    "sasrec-collab-tokens": (["--input", "tokens"], ["--collab-dim", "64", "--collab-source",
                                                     "sasrec"]),
    # whole-sequence training and the item-level objective, on BASE's (default) SIDs. prefix:
    # the generator as it was before them (every prefix its own example, bidirectional)
    "prefix": (["--objective", "prefix", "--no-causal"], None),
    "causal-prefix": (["--objective", "prefix", "--causal"], None),
    # 256 windows per step: the first sequence runs, before 64 became the default
    "sequence": (["--objective", "sequence", "--causal", "--batch-size", "256"], None),
    # a quarter of the windows per step: as many optimizer steps per epoch as prefix's 256
    "sequence-b64": (["--objective", "sequence", "--causal", "--batch-size", "64"], None),
    "sequence-item": (["--objective", "sequence", "--causal", "--item-weight", "1"], None),
    "sequence-level1": (["--objective", "sequence", "--causal", "--first-level-weight", "2"],
                        None),
    "sequence-hardneg": (["--objective", "sequence", "--causal", "--hard-negatives", "16"],
                         None),
    "sequence-hybrid": (["--objective", "sequence", "--causal", "--score", "hybrid"], None),
    # 2 + 2 layers instead of 4 + 4 (half the epoch; BARGE's size on Beauty; now the default)
    "sequence-small": (["--objective", "sequence", "--causal", "--num-layers", "2"], None),
    # 2 + 2 layers with the item-level loss beside the token loss
    "sequence-small-item": (["--objective", "sequence", "--causal", "--num-layers", "2",
                             "--item-weight", "1"], None),
    # the hybrid whose dense head also learns a free vector per item (SASRec's item table)
    "sequence-hybrid-ids": (["--objective", "sequence", "--causal", "--score", "hybrid",
                             "--item-ids"], None),
    # on top of the item-level loss: each other lever, and the hybrid score
    "sequence-item-level1": (["--objective", "sequence", "--causal", "--item-weight", "1",
                              "--first-level-weight", "2"], None),
    "sequence-item-hardneg": (["--objective", "sequence", "--causal", "--item-weight", "1",
                               "--hard-negatives", "16"], None),
    "sequence-item-hybrid": (["--objective", "sequence", "--causal", "--item-weight", "1",
                              "--score", "hybrid"], None),
}
METRICS = ("recall@1", "recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20",
           "coverage@10")
COMPARED = ("ndcg@10", "recall@10")


def evaluated(run: Path, split: str, models: list[str]) -> bool:
    path = run / "eval" / "stats.json"
    if not path.is_file():
        return False
    got = read_json(path)["splits"].get(split, {}).get("models", {})
    return all(m in got for m in models)


def evaluate(run: Path, models: list[str], args) -> None:
    for split in ("valid", "test"):
        if not evaluated(run, split, models):
            flags = [x for m in models for x in ("--model", m)]
            sgrec("eval", "--run", str(run), *flags, "--split", split, "--device",
                  args.device, "--decode", "beam", threads=args.threads)


def train_generator(run: Path, flags: list[str], args) -> None:
    if done(run, "sft"):
        return
    if "--num-layers" not in flags:  # every variant was trained at the 4 + 4 of its time
        flags = [*flags, *LAYERS_BEFORE]
    resume = ["--resume"] if (run / ".sft.resume" / "checkpoint").is_dir() else []
    sgrec("train", "--run", str(run), "--epochs", str(args.epochs), "--patience",
          str(args.patience), "--valid-users", "0", "--device", args.device, "--no-progress",
          *flags, *resume, threads=args.threads)


def base_models(base: Path, args) -> None:
    if not done(base, "data"):
        sgrec("prepare", str(args.data), "--run", str(base))
    if not done(base, "sids"):
        sgrec("build-sids", "--run", str(base), "--no-progress", *OLD_DEFAULT_SIDS,
              threads=args.threads)
    if not done(base, "sasrec"):
        sgrec("train", "--run", str(base), "--model", "sasrec", "--epochs", "200",
              "--patience", "10", threads=args.threads)
    if args.base_generator:
        train_generator(base, OLD_DEFAULT_TRAIN, args)
    evaluate(base, ["sft", "sasrec", "popular"] if args.base_generator else
             ["sasrec", "popular"], args)


def variant_run(base: Path, name: str, args) -> Path:
    flags, sid_flags = VARIANTS[name]
    run = base.parent / f"{base.name}.variants" / name
    run.mkdir(parents=True, exist_ok=True)
    if not done(run, "data"):
        shutil.copytree(base / "data", run / "data")
    if not done(run, "sids"):
        if sid_flags is None:
            shutil.copytree(base / "sids", run / "sids")
        else:
            if "sasrec" in sid_flags and not done(run, "sasrec"):
                shutil.copytree(base / "sasrec", run / "sasrec", dirs_exist_ok=True)
            sgrec("build-sids", "--run", str(run), "--no-progress", *sid_flags,
                  threads=args.threads)
    train_generator(run, flags, args)
    models = ["sft", "sft@generator"] if "--score" in flags else ["sft"]
    evaluate(run, models, args)
    return run


def split_result(run: Path, split: str, model: str) -> tuple[dict, dict[int, int]]:
    stats = read_json(run / "eval" / "stats.json")["splits"][split]
    m = stats["models"][model]
    ranks = {r["user"]: r["rank"] for r in read_jsonl(run / "eval" / f"{model}.{split}.jsonl")}
    return {k: m[k] for k in METRICS}, ranks


def compare(a: dict[int, int], b: dict[int, int], n_boot: int,
            metrics: tuple[str, ...] = COMPARED) -> dict:
    """Paired bootstraps of ``metrics`` between two models' per-user ranks {user: rank}."""
    users = sorted(a)
    if sorted(b) != users:
        raise SystemExit("the two models were evaluated on different users")
    import numpy as np

    ra = per_user_metrics(np.array([a[u] for u in users]))
    rb = per_user_metrics(np.array([b[u] for u in users]))
    return {m: paired_bootstrap(ra[m], rb[m], n_boot=n_boot, seed=0) for m in metrics}


def entry(run: Path, model: str, label: str, refs: dict, n_boot: int, budget: dict) -> dict:
    valid, _ = split_result(run, "valid", model)
    test, ranks = split_result(run, "test", model)
    out = {"variant": label, "run": str(run), **budget, "valid": valid, "test": test,
           "test_vs": {}}
    for ref, ref_ranks in refs.items():
        if ref != label:
            out["test_vs"][ref] = compare(ranks, ref_ranks, n_boot)
    return out


def budget_of(run: Path) -> dict:
    if not done(run, "sft"):
        return {}
    summary = read_json(run / "sft" / "summary.json")
    log = read_jsonl(run / "sft" / "train_log.jsonl")
    cfg = read_json(run / "sft" / "manifest.json")["config"]
    sids = read_json(run / "sids" / "manifest.json")
    return {"sids": {k: sids["config"].get(k) for k in ("method", "dedup", "collab_dim",
                                                        "collab_weight", "collab_source")},
            "generator": cfg["model"], "valid_users": summary["valid_users"],
            "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
            "seconds_per_epoch": round(sum(r["seconds"] for r in log) / max(1, len(log)), 1),
            **({"hybrid_weight": summary["hybrid_weight"]} if "hybrid_weight" in summary
               else {})}


def report(base: Path, names: list[str], args) -> dict:
    _, sas = split_result(base, "test", "sasrec")
    refs = {"sasrec": sas}
    if args.base_generator:
        refs["baseline generator"] = split_result(base, "test", "sft")[1]
    for name in args.against:  # further references: variants already run
        refs[name] = split_result(base.parent / f"{base.name}.variants" / name, "test", "sft")[1]
    rows = []
    for label, model in (("popular", "popular"), ("sasrec", "sasrec")):
        rows.append(entry(base, model, label, refs, args.n_boot, {}))
    if args.base_generator:
        rows.append(entry(base, "sft", "baseline generator", refs, args.n_boot,
                          budget_of(base)))
    for name in names:
        run = base.parent / f"{base.name}.variants" / name
        if not evaluated(run, "test", ["sft"]):
            print(f"{name}: not evaluated yet, left out", file=sys.stderr)
            continue
        b = budget_of(run)
        rows.append(entry(run, "sft", name, refs, args.n_boot, b))
        if b.get("generator", {}).get("score") == "hybrid":
            rows.append(entry(run, "sft@generator", f"{name}@generator", refs, args.n_boot, b))
            # hybrid scoring against the same model's pure generator
            rows[-2]["test_vs"]["its generator"] = compare(
                split_result(run, "test", "sft")[1], split_result(run, "test", "sft@generator")[1],
                args.n_boot)
    return {"data": read_json(base / "data" / "manifest.json").get("dataset"),
            "base": str(base),
            "protocol": "leave-one-out, all users, history excluded, 20 beams (+ fill); "
                        "checkpoints chosen on all validation users",
            "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="raw dataset, when BASE has no data/ yet")
    ap.add_argument("--variants", default="items",
                    help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--no-report", action="store_true", help="train and evaluate only")
    ap.add_argument("--no-base-generator", dest="base_generator", action="store_false",
                    help="no baseline generator in BASE (where it costs too much to train): "
                         "variants are compared with SASRec and --against only")
    ap.add_argument("--against", default="",
                    help="comma-separated variants (already run) every row is also compared with")
    ap.add_argument("--out", type=Path,
                    default=RESULTS / "generator_ablation.json")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    args.against = [v for v in args.against.split(",") if v]
    unknown = [v for v in names + args.against if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    base_models(args.base, args)
    for name in names:
        variant_run(args.base, name, args)
    if args.no_report:
        return
    out = report(args.base, names, args)
    write_result(args.out, out, threads=args.threads, device=args.device)
    print("| variant | epochs (best) | s/epoch | test R@10 | test N@10 | vs SASRec N@10 (p) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in out["rows"]:
        t, vs = r["test"], r["test_vs"].get("sasrec", {}).get("ndcg@10")
        ep = f"{r['epochs_run']} ({r['best_epoch']})" if "epochs_run" in r else ""
        cmp = f"{vs['diff']:+.4f} (p={vs['p_value']:.4f})" if vs else ""
        print(f"| {r['variant']} | {ep} | {r.get('seconds_per_epoch', '')} | "
              f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {cmp} |")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
