"""Beam search against exhaustive whole-catalogue scoring, on one trained generator.

For RUN's generator (RUN/sft unless --model), the test targets of --users seeded users (0 =
all): NDCG@10, Recall@10/20 (history excluded, as `sgrec eval`), milliseconds per user and the
process's peak memory growth, for beam search at each --beams width and for exhaustive
decoding. Each setting runs in a fresh process (so that its peak memory is its own) on the
same users; the paired bootstrap compares each setting's per-user NDCG@10 with beam 20's.

Then the cost of exhaustive decoding against beam 20 as the catalogue grows (random untrained
models of the default architecture over random SIDs of 3 x 256 codes, 64 users with 20-item
histories): what `--decode auto`'s threshold is read from.

Usage: python bench/decode_modes.py --run RUN [--users 2000] [--threads 2]
           [--out bench/results/decode_modes_scientific.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import RESULTS, write_result

SCALES = (1_000, 4_344, 16_000, 64_000)


def one_setting(run: Path, model: str, mode: str, beams: int, users: int, threads: int
                ) -> dict:
    """One decode setting on RUN's test users, in this process."""
    import torch

    from sgrec_cli.eval.metrics import per_user_metrics, ranks_of_targets
    from sgrec_cli.generator.decode import generator_top_items
    from sgrec_cli.generator.store import load_generator_step
    from sgrec_cli.rundir import as_run
    from sgrec_cli.sampling import seeded_subset

    torch.set_num_threads(threads)
    r = as_run(run)
    examples = seeded_subset(r.data.split("test"), users, 0)
    gen = load_generator_step(r, model, "cpu")
    hist = [e.history for e in examples]
    generator_top_items(gen, hist[:8], 20, beams, fill=True, decode=mode)  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    top, _ = generator_top_items(gen, hist, 20, beams, fill=True, decode=mode)
    seconds = time.perf_counter() - t0
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    ranks = ranks_of_targets(top, np.array([e.target for e in examples]))
    m = per_user_metrics(ranks)
    return {"mode": mode, "beams": beams if mode == "beam" else None, "users": len(examples),
            "ndcg@10": float(np.mean(m["ndcg@10"])), "recall@10": float(np.mean(m["recall@10"])),
            "recall@20": float(np.mean(m["recall@20"])),
            "ms_per_user": round(1000 * seconds / len(examples), 2),
            "peak_growth_mb": round(grew / 2**20, 1), "ranks": ranks.tolist()}


def one_scale(n_items: int, mode: str, threads: int) -> dict:
    """ms per user of one decode mode over a random catalogue of ``n_items``."""
    import torch

    from sgrec_cli.generator.config import GeneratorConfig
    from sgrec_cli.generator.decode import LoadedGenerator, generator_top_items
    from sgrec_cli.generator.model import build_model
    from sgrec_cli.generator.tokens import SidVocab
    from sgrec_cli.generator.trie import SidTrie

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    flat = rng.choice(256 ** 3, n_items, replace=False)
    codes = np.stack([flat // 65536, (flat // 256) % 256, flat % 256], axis=1)
    vocab = SidVocab([256] * 3)
    torch.manual_seed(0)
    model = build_model(GeneratorConfig(causal=True), vocab, codes=codes).eval()
    gen = LoadedGenerator(model, vocab, SidTrie.from_codes(codes, [256] * 3), codes, 20)
    hist = [list(rng.choice(n_items, 20, replace=False)) for _ in range(64)]
    generator_top_items(gen, hist[:4], 20, 20, fill=True, decode=mode)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    generator_top_items(gen, hist, 20, 20, fill=True, decode=mode)
    seconds = time.perf_counter() - t0
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"items": n_items, "mode": mode, "ms_per_user": round(1000 * seconds / len(hist), 2),
            "peak_growth_mb": round(grew / 2**20, 1)}


def in_fresh_process(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path)
    ap.add_argument("--model", default="sft")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--beams", default="20,100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scales", default=",".join(map(str, SCALES)))
    ap.add_argument("--out", type=Path, default=RESULTS / "decode_modes.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # mode:beams, in a child process
    ap.add_argument("--scale", help=argparse.SUPPRESS)  # items:mode, in a child process
    args = ap.parse_args()
    if args.one:
        mode, beams = args.one.split(":")
        print(json.dumps(one_setting(args.run, args.model, mode, int(beams), args.users,
                                     args.threads)))
        return
    if args.scale:
        n, mode = args.scale.split(":")
        print(json.dumps(one_scale(int(n), mode, args.threads)))
        return
    from sgrec_cli.eval.bootstrap import paired_bootstrap
    from sgrec_cli.eval.metrics import ndcg_gains

    common = ["--run", str(args.run), "--model", args.model, "--users", str(args.users),
              "--threads", str(args.threads)]
    settings = [f"beam:{b}" for b in args.beams.split(",")] + ["exhaustive:0"]
    rows = [in_fresh_process([*common, "--one", s]) for s in settings]
    base = ndcg_gains(np.array(rows[0]["ranks"]), 10)
    for row in rows:
        gains = ndcg_gains(np.array(row.pop("ranks")), 10)
        row["ndcg@10_vs_first"] = paired_bootstrap(gains, base, n_boot=10_000, seed=0)
    scales = [in_fresh_process(["--threads", str(args.threads), "--scale", f"{n}:{mode}"])
              for n in args.scales.split(",") for mode in ("beam", "exhaustive")]
    write_result(args.out, {"run": str(args.run), "model": args.model, "settings": rows,
                            "scales": scales}, threads=args.threads)
    for row in rows:
        print(row)
    for row in scales:
        print(row)


if __name__ == "__main__":
    main()
