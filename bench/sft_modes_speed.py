"""Seconds per SFT epoch of generator modes, measured back to back in one process.

For each mode: ``--steps`` optimizer steps on the run's length-grouped training batches (the
same examples in every mode) and constrained beam search (20 beams, top 10) for
``--valid-users`` validation users, as one SFT epoch does. Each is scaled to a full epoch
(all batches, all validation users) and reported as a ratio to the first mode.

Usage (RUN_SCI: a Scientific run with data and sids; see bench/README.md):
  python bench/sft_modes_speed.py --run RUN_SCI --modes tokens,items,items-text-hybrid
       [--steps 30] [--valid-users 1000] [--out bench/results/sft_modes_speed.json]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from common import RESULTS, write_result

from sgrec_cli.config import GeneratorConfig
from sgrec_cli.generator.decode import predict_topk
from sgrec_cli.generator.model import build_model
from sgrec_cli.generator.sft import encode_examples, length_grouped_batches
from sgrec_cli.generator.tokens import SidVocab
from sgrec_cli.generator.trie import SidTrie
from sgrec_cli.rundir import Run

MODES = {
    "tokens": {"input": "tokens"},
    "items": {"input": "items"},
    "items-text": {"input": "items", "text": True},
    "items-text-hybrid": {"input": "items", "text": True, "score": "hybrid"},
    "tokens-hybrid": {"input": "tokens", "score": "hybrid"},
    "items-ids": {"input": "items", "ids": True},
    "items-recency": {"input": "items", "recency": True},
    "items-text-ids-hybrid": {"input": "items", "text": True, "ids": True, "score": "hybrid"},
}


def measure(run: Run, mode: str, args) -> dict:
    data, sids = run.data, run.sids
    cfg = GeneratorConfig(**MODES[mode])
    vocab = SidVocab(sids.codebook_sizes)
    codes = sids.codes
    train = data.split("train")
    ids, mask, labels, targets = encode_examples(train, codes, vocab, data.max_history,
                                                 per_item=cfg.input == "items")
    lengths = mask.sum(1)
    batches = length_grouped_batches(lengths, args.batch_size,
                                     torch.Generator().manual_seed(0))
    n_batches = len(batches)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, codes=codes,
                        text=sids.embeddings() if cfg.text else None).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for idx in batches[: args.steps]:
        width = int(lengths[idx].max())
        out = model(input_ids=ids[idx, :width], attention_mask=mask[idx, :width],
                    labels=labels[idx], items=targets[idx] if model.hybrid else None)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    t_train = time.perf_counter() - t0
    model.eval()
    valid = data.split("valid")[: args.valid_users]
    trie = SidTrie.from_codes(codes, vocab.codebook_sizes)
    t0 = time.perf_counter()
    predict_topk(model, vocab, trie, [e.history for e in valid], codes, 10, 20,
                 max_history=data.max_history)
    t_valid = time.perf_counter() - t0
    n_valid = len(data.split("valid"))
    epoch = t_train * n_batches / args.steps + t_valid * n_valid / len(valid)
    return {"mode": mode, "config": MODES[mode], "train_seconds": round(t_train, 2),
            "steps": args.steps, "valid_seconds": round(t_valid, 2),
            "valid_users": len(valid), "mean_encoder_width": float(lengths.float().mean()),
            "epoch_seconds_estimate": round(epoch, 1),
            "epoch_seconds_train_only": round(t_train * n_batches / args.steps, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--modes", default="tokens,items")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--valid-users", type=int, default=1000)
    ap.add_argument("--out", type=Path,
                    default=RESULTS / "sft_modes_speed.json")
    args = ap.parse_args()
    run = Run(args.run)
    rows = [measure(run, m, args) for m in args.modes.split(",")]
    base = rows[0]
    for r in rows:
        r["epoch_ratio_to_first"] = round(r["epoch_seconds_estimate"]
                                          / base["epoch_seconds_estimate"], 3)
        r["train_ratio_to_first"] = round(r["epoch_seconds_train_only"]
                                          / base["epoch_seconds_train_only"], 3)
    write_result(args.out, {
        "run": str(args.run), "batch_size": args.batch_size,
        "batches_per_epoch": math.ceil(len(run.data.split("train")) / args.batch_size),
        "rows": rows})
    for r in rows:
        print(f"{r['mode']}: {r['epoch_seconds_estimate']} s/epoch "
              f"(x{r['epoch_ratio_to_first']}; training only x{r['train_ratio_to_first']})")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
