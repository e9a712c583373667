"""SASRec baseline: learns a deterministic next-item rule; padding and windows are right."""

from __future__ import annotations

import numpy as np
import torch

from sgrec_cli.baselines.sasrec import (
    SASRecConfig,
    left_pad,
    recommend,
    train_sasrec,
    training_tensors,
)


def test_left_pad_and_windows():
    assert left_pad([(4, 5), ()], 3).tolist() == [[0, 5, 6], [0, 0, 0]]
    # training portion of 1..7 (last two held out) is 1..5 -> targets 2..5, each once;
    # max_len 2: windows end at 5 (inputs 3 4 -> 4 5) and at 3 (inputs 1 2 -> 2 3)
    x, y = training_tensors([[1, 2, 3, 4, 5, 6, 7]], max_len=2)
    assert x.tolist() == [[4, 5], [2, 3]] and y.tolist() == [[4, 5], [2, 3]]
    assert sorted(t for t in y.flatten().tolist() if t >= 0) == [2, 3, 4, 5]


def test_learns_successor_rule():
    torch.manual_seed(0)
    n = 30
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(120):
        start = int(rng.integers(n))
        seqs.append([(start + j) % n for j in range(8)])
    valid_h = [tuple(s[:-2]) for s in seqs]
    valid_t = [s[-2] for s in seqs]
    cfg = SASRecConfig(hidden=32, epochs=25, patience=25, batch_size=32, lr=5e-3, max_len=8)
    model, hist = train_sasrec(seqs, n, valid_h, valid_t, cfg)
    assert hist[-1]["loss"] < hist[0]["loss"]
    top = recommend(model, [tuple(s[:-1]) for s in seqs], 5)
    hit1 = np.mean(top[:, 0] == np.array([s[-1] for s in seqs]))
    assert hit1 > 0.8  # chance is 1/30
    assert all(len(set(r)) == 5 and not set(r) & set(s[:-1]) for r, s in zip(top, seqs,
                                                                             strict=True))
