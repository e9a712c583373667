"""SFT step speed: length-grouped batches vs random batches padded to the longest history.

Same model (default GeneratorConfig), same training examples of a prepared run (Scientific by
default), same number of optimizer steps, in one process: the ratio is random-batch time /
length-grouped time for the same examples seen.

Usage (RUN_SCI: a Scientific run with data and sids; see bench/README.md):
  python bench/sft_batches.py --run RUN_SCI [--steps 40] [--out bench/results/sft_batches.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import RESULTS, write_result

from sgrec_cli.config import GeneratorConfig
from sgrec_cli.generator.model import build_model
from sgrec_cli.generator.sft import encode_examples, length_grouped_batches
from sgrec_cli.generator.tokens import SidVocab
from sgrec_cli.rundir import load_data, load_sids


def run_steps(vocab, batches, ids, mask, labels, lengths) -> tuple[float, int]:
    """Seconds for the given batches (one optimizer step each) and the examples they hold."""
    torch.manual_seed(0)
    model = build_model(GeneratorConfig(), vocab).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for idx in batches:
        width = int(lengths[idx].max())
        out = model(input_ids=ids[idx, :width], attention_mask=mask[idx, :width],
                    labels=labels[idx])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return time.perf_counter() - t0, sum(len(b) for b in batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=RESULTS / "sft_batches.json")
    args = ap.parse_args()
    data, sids = load_data(args.run), load_sids(args.run)
    vocab = SidVocab(sids.codebook_sizes)
    train = data.split("train")
    ids, mask, labels, _ = encode_examples(train, sids.codes, vocab, data.max_history)
    lengths = mask.sum(1)
    grouped = length_grouped_batches(lengths, args.batch_size, torch.Generator().manual_seed(0))
    grouped = grouped[: args.steps]
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    plain = list(perm.split(args.batch_size))[: args.steps]
    t_plain, n_plain = run_steps(vocab, plain, ids, mask, labels, lengths)
    t_grouped, n_grouped = run_steps(vocab, grouped, ids, mask, labels, lengths)
    report = {
        "run": str(args.run), "steps": args.steps, "batch_size": args.batch_size,
        "random_batches": {"seconds": t_plain, "examples_per_s": n_plain / t_plain},
        "length_grouped": {"seconds": t_grouped, "examples_per_s": n_grouped / t_grouped},
        "speedup": (n_grouped / t_grouped) / (n_plain / t_plain),
        "mean_padded_width": {
            "random": float(torch.stack([lengths[b].max() for b in plain]).float().mean()),
            "length_grouped": float(torch.stack([lengths[b].max() for b in grouped]).float()
                                    .mean())},
    }
    print(json.dumps(write_result(args.out, report), indent=2))


if __name__ == "__main__":
    main()
