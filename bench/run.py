"""sgrec benchmarks: each figure is a ratio against a baseline measured in the same run.

Usage: python bench/run.py [--data DATA] [--out bench/results/bench.json] [--repeat 3]
(DATA: the folder of raw datasets, by default ../shared/data beside the checkout, the layout
`make bench` expects; a dataset it lacks is skipped)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, write_result

from sgrec_cli.config import BuildSidsConfig, PrepareConfig
from sgrec_cli.data.io import load_json, read_text
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.sids.step import run_step as build_sids


def timed(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_prepare(data: Path, repeat: int) -> list[dict]:
    """`prepare` end to end vs the baseline of just parsing the raw files once."""
    rows = []
    for name in ("amazon_scientific_2018", "amazon_beauty_2014"):
        src = data / name
        if not src.is_dir():
            print(f"skip prepare/{name}: {src} is absent", file=sys.stderr)
            continue
        raw_files = sorted(p for p in src.iterdir() if p.suffix in (".json", ".txt"))

        def baseline(raw_files: list[Path] = raw_files) -> None:
            for p in raw_files:
                load_json(p) if p.suffix == ".json" else read_text(p).split()

        def run(src: Path = src) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                prepare(Path(tmp), PrepareConfig(source=str(src)))

        base, full = timed(baseline, repeat), timed(run, repeat)
        rows.append({"bench": f"prepare/{name}", "baseline": "parse raw files only",
                     "baseline_s": round(base, 4), "time_s": round(full, 4),
                     "ratio_vs_baseline": round(full / base, 2)})
    return rows


def bench_sids(data: Path, datasets: list[str]) -> list[dict]:
    """`build-sids` with cached embeddings: RQ-VAE vs the residual k-means baseline."""
    rows = []
    for name in datasets:
        src = data / name
        if not src.is_dir():
            print(f"skip sids/{name}: {src} is absent", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp)
            prepare(run, PrepareConfig(source=str(src)))
            # first call fills the embedding cache (not timed as build time)
            build_sids(run, BuildSidsConfig(method="rqkmeans", device="cpu"), progress=False)
            out = {}
            for method in ("rqkmeans", "rqvae"):
                t0 = time.perf_counter()
                stats = build_sids(run, BuildSidsConfig(method=method, device="cpu"),
                                   progress=False)
                out[method] = (time.perf_counter() - t0, stats)
        base_s, base = out["rqkmeans"]
        full_s, st = out["rqvae"]
        for method, (secs, stats) in out.items():
            rows.append({
                "bench": f"build-sids/{name}/{method}", "baseline": "rqkmeans build",
                "baseline_s": round(base_s, 3), "time_s": round(secs, 3),
                "ratio_vs_baseline": round(secs / base_s, 2),
                "raw_collision_rate": round(stats["raw_collision_rate"], 4),
                "level1_used": stats["level_usage"][0]["used"],
                "relative_reconstruction_error": round(
                    stats["relative_reconstruction_error"], 4),
                "coherence_lift": (stats["semantic_coherence_level1_leaf_category"] or {}).get(
                    "lift")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sids-datasets", default="amazon_scientific_2018",
                    help="comma-separated dataset folders for the build-sids bench ('' skips)")
    args = ap.parse_args()
    rows = bench_prepare(args.data, args.repeat)
    rows += bench_sids(args.data, [d for d in args.sids_datasets.split(",") if d])
    write_result(args.out, {"results": rows})
    for r in rows:
        print(f"{r['bench']:40s} {r['time_s']:8.3f} s  = {r['ratio_vs_baseline']:5.2f}x "
              f"baseline ({r['baseline']}, {r['baseline_s']:.3f} s)")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
