"""Where a trained generator loses the target, per SID level.

For every user of a split: teacher-forced accuracy of each level given the true prefix (over all
codes, and over the codes the catalogue allows), and whether the target's prefix is still among
the beams after each level of the constrained beam search (sgrec_cli/generator/diagnose.py).

``--model sasrec`` asks the same of the run's SASRec through the same SIDs: a prefix's
probability is the softmax mass of the items under it, and its beam keeps the most massive
prefixes level by level. A level where SASRec loses as many targets as the generator is lost to
the SIDs' grouping, not to the generator.

Usage (RUN_SCI: a Scientific run with data, sids and sft; see bench/README.md):
  python bench/diagnose.py --run RUN_SCI --model sft --split valid \\
      --out bench/results/diagnose_scientific.json
  python bench/diagnose.py --run RUN_SCI --model sasrec --split valid \\
      --out bench/results/diagnose_scientific.json

--out appends one row to the JSON list in that file (each row with its own preamble).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from common import preamble, read_json, write_json


def generator_tables(run, examples, args) -> dict:
    from sgrec_cli.generator.diagnose import diagnose
    from sgrec_cli.generator.store import load_generator_step

    g = load_generator_step(run, args.model, args.device)
    return diagnose(g.model, g.vocab, g.trie, [e.history for e in examples],
                    [e.target for e in examples], g.codes, max_history=g.max_history,
                    num_beams=args.num_beams, batch=args.batch)


def sasrec_tables(run, examples, args) -> dict:
    import numpy as np

    from sgrec_cli.baselines.sasrec import catalogue_log_probs
    from sgrec_cli.baselines.store import load_sasrec
    from sgrec_cli.generator.diagnose import distribution_diagnosis
    from sgrec_cli.generator.trie import SidTrie

    model = load_sasrec(run)
    codes = np.asarray(run.sids.codes)
    trie = SidTrie.from_codes(codes, list(run.sids.codebook_sizes))
    parts = []
    for i in range(0, len(examples), args.batch):
        part = examples[i:i + args.batch]
        lp = catalogue_log_probs(model, [e.history for e in part])
        parts.append(distribution_diagnosis(lp, trie, codes, [e.target for e in part],
                                            args.num_beams))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default="sft", help="sft, a2po, a2po-TAG or sasrec")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--num-beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="append the result to this JSON file")
    args = ap.parse_args()

    from sgrec_cli.generator.diagnose import summarize_diagnosis
    from sgrec_cli.rundir import Run

    run = Run(args.run)
    examples = run.data.split(args.split)
    t0 = time.perf_counter()
    tables = (sasrec_tables if args.model == "sasrec" else generator_tables)(run, examples, args)
    result = {
        **preamble(device=args.device),
        "run": str(args.run), "model": args.model, "split": args.split,
        "num_beams": args.num_beams, "sids": run.sids.manifest.config,
        "model_manifest": run.manifest(args.model).digest,
        **summarize_diagnosis(tables),
        "seconds": round(time.perf_counter() - t0, 1), "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        rows = read_json(args.out) if args.out.is_file() else []
        write_json(args.out, [*rows, result])


if __name__ == "__main__":
    main()
