"""Where a trained generator loses the target, per SID level.

For every user of a split: teacher-forced accuracy of each level given the true prefix (over all
codes, and over the codes the catalogue allows), and whether the target's prefix is still among
the beams after each level of the constrained beam search (sgrec_cli/generator/diagnose.py).

Usage (RUN_SCI: a Scientific run with data, sids and sft; see bench/README.md):
  python bench/diagnose.py --run RUN_SCI --model sft --split valid \\
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default="sft", help="sft, a2po or a2po-TAG")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--num-beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="append the result to this JSON file")
    args = ap.parse_args()

    from sgrec_cli.generator.diagnose import diagnose, summarize_diagnosis
    from sgrec_cli.generator.store import load_generator_step
    from sgrec_cli.rundir import Run

    run = Run(args.run)
    g = load_generator_step(run, args.model, args.device)
    examples = run.data.split(args.split)
    t0 = time.perf_counter()
    tables = diagnose(g.model, g.vocab, g.trie, [e.history for e in examples],
                      [e.target for e in examples], g.codes, max_history=g.max_history,
                      num_beams=args.num_beams, batch=args.batch)
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
