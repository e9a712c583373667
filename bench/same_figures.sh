#!/usr/bin/env bash
# Do two source trees compute the same figures? A short fixed-seed pipeline on Scientific, run
# with the sgrec of SRC_A and of SRC_B (each a checkout's folder), then every SID file hash and
# every eval metric compared. For refactors: "same seed -> same SIDs and same eval metrics".
#   bash bench/same_figures.sh OLD_CHECKOUT NEW_CHECKOUT OUT_DIR [DATA]
# Takes about 20 minutes per tree on a 2-core CPU with the item embeddings cached.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); OUT=$3
DATA=${4:-../shared/data/amazon_scientific_2018}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
pipeline() {  # SRC RUN
  local S="env PYTHONPATH=$1/src $PY -m sgrec_cli.cli" R=$2
  rm -rf "$R"
  $S prepare "$DATA" --run "$R" --json > "$R.prepare.json"
  $S build-sids --run "$R" --json --no-progress > "$R.sids.json"
  $S train --run "$R" --epochs 2 --valid-users 200 --json --no-progress > "$R.sft.json"
  $S train --run "$R" --model sasrec --epochs 3 --json > "$R.sasrec.json"
  $S judge --run "$R" --max-users 300 --num-candidates 8 --json --no-progress > "$R.judge.json"
  $S train --run "$R" --a2po --steps 4 --eval-every 2 --valid-users 100 --batch-users 8 \
    --json --no-progress > "$R.a2po.json"
  $S eval --run "$R" --model sft --model a2po --model sasrec --model popular --n-boot 1000 \
    --json > "$R.eval.json"
}
pipeline "$A" "$OUT/a"
pipeline "$B" "$OUT/b"
$PY - "$OUT" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
same = True
for f in ("sids.npy", "sids.json"):
    h = [hashlib.sha256((out / r / "sids" / f).read_bytes()).hexdigest() for r in "ab"]
    print(f"sids/{f}: {'identical' if h[0] == h[1] else 'DIFFERENT'}")
    same &= h[0] == h[1]
ev = [json.loads((out / f"{r}.eval.json").read_text()) for r in "ab"]
for m, a in ev[0]["models"].items():
    b = ev[1]["models"][m]
    keys = [k for k in a if k not in ("seconds", "computed_from")]
    ok = all(a[k] == b[k] for k in keys)
    same &= ok
    print(f"{m}: {'identical' if ok else 'DIFFERENT'} (NDCG@10 {a['ndcg@10']:.6f} / "
          f"{b['ndcg@10']:.6f})")
comps = [[(c["a"], c["b"], c["metric"], c["diff"], c["p_value"]) for c in e["comparisons"]]
         for e in ev]
print("comparisons:", "identical" if comps[0] == comps[1] else "DIFFERENT")
same &= comps[0] == comps[1]
sys.exit(0 if same else 1)
PYEOF
