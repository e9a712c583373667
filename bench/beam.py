"""Constrained beam search vs ``model.generate`` + ``prefix_allowed_tokens_fn`` (LC-Rec style).

A Scientific-shaped catalogue (4,344 items, 3 levels x 256 codes, random unique SIDs, seed 0),
the default GeneratorConfig (random init), 256 users with 20-item histories, 20 beams, batches
of 64 users for both methods. Each figure is a median of 3 timed runs after one warm-up; the
ratio is HF time / our time, measured in the same process on the same inputs.

Usage: python bench/beam.py [--out bench/results/beam.json] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, ROOT, write_result

sys.path.insert(0, str(ROOT / "tests"))  # the generate() oracle lives with the tests

from hf_oracle import allowed_tokens, hf_generate_baseline
from sgrec_cli.config import GeneratorConfig
from sgrec_cli.generator.beam import constrained_beam_search
from sgrec_cli.generator.model import build_model
from sgrec_cli.generator.tokens import SidVocab
from sgrec_cli.generator.trie import SidTrie

N_ITEMS, SIZES = 4344, [256, 256, 256]
N_USERS, HIST_LEN, NUM_BEAMS, BATCH = 256, 20, 20, 64
TIE = 1e-5


def catalogue(seed: int = 0) -> np.ndarray:
    """Random unique SIDs, (N, 3)."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(SIZES, dtype=np.int64)), N_ITEMS, replace=False)
    return np.stack([flat // 65536, (flat // 256) % 256, flat % 256], axis=1)


def run_all(fn, batches) -> tuple[torch.Tensor, torch.Tensor]:
    outs = [fn(ids, mask) for ids, mask in batches]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def timed(fn, batches, repeat: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    """Median wall time of ``repeat`` passes over all batches, after one warm-up pass."""
    result = run_all(fn, batches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_all(fn, batches)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def agreement(ours, theirs) -> dict:
    """Share of users whose top-20 lists agree exactly (order included, swaps allowed only
    between score ties), and the mean overlap of the item sets."""
    (ia, sa), (ib, sb) = ours, theirs
    same, overlap = 0, []
    for ra, xa, rb in zip(ia.tolist(), sa, ib.tolist(), strict=True):
        tied_ok = all(
            a == b or ((xa - xa[j]).abs() <= TIE).sum() > 1
            for j, (a, b) in enumerate(zip(ra, rb, strict=True))
        )
        same += int(tied_ok)
        overlap.append(len(set(ra) & set(rb)) / len(ra))
    return {
        "lists_agree": same / len(ia),
        "mean_set_overlap": float(np.mean(overlap)),
        "max_score_diff": float((sa - sb).abs().max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=RESULTS / "beam.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    codes = catalogue(0)
    vocab = SidVocab(SIZES)
    trie = SidTrie.from_codes(codes, SIZES).to(device)
    cfg = GeneratorConfig()
    torch.manual_seed(0)
    model = build_model(cfg, vocab).to(device).eval()
    rng = np.random.default_rng(1)
    histories = [tuple(rng.integers(0, N_ITEMS, size=HIST_LEN)) for _ in range(N_USERS)]
    batches = []
    for start in range(0, N_USERS, BATCH):
        ids, mask = vocab.encode_history(histories[start : start + BATCH], codes, HIST_LEN)
        batches.append((ids.to(device), mask.to(device)))

    allowed = allowed_tokens(trie, vocab)  # built once, outside the timing, as LC-Rec does

    def ours(ids, mask):
        return constrained_beam_search(model, ids, mask, trie, vocab, NUM_BEAMS)

    def hf(ids, mask):
        return hf_generate_baseline(model, ids, mask, trie, vocab, NUM_BEAMS, allowed=allowed)

    t_ours, res_ours = timed(ours, batches, args.repeat)
    t_hf, res_hf = timed(hf, batches, args.repeat)
    report = {
        "setup": {"items": N_ITEMS, "codebook_sizes": SIZES, "users": N_USERS,
                  "history_items": HIST_LEN, "num_beams": NUM_BEAMS, "batch": BATCH,
                  "model": cfg.__dict__, "repeat": args.repeat},
        "seconds": {"constrained_beam_search": t_ours, "hf_generate_baseline": t_hf},
        "users_per_second": {"constrained_beam_search": N_USERS / t_ours,
                             "hf_generate_baseline": N_USERS / t_hf},
        "speedup_vs_hf": t_hf / t_ours,
        "agreement": agreement(res_ours, res_hf),
    }
    print(json.dumps(write_result(args.out, report, device=str(device)), indent=2))


if __name__ == "__main__":
    main()
