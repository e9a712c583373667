"""SASRec baseline: learns a deterministic next-item rule; padding and windows are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgrec_cli.baselines.sasrec import (
    SASRec,
    SASRecConfig,
    item_log_probs,
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


def test_item_log_probs_are_the_catalogue_softmax_at_the_last_position():
    torch.manual_seed(0)
    model = SASRec(12, SASRecConfig(hidden=16, max_len=5)).eval()
    histories = [[1, 2, 3], [7], [0, 4, 4, 9, 10, 11, 2]]
    items = np.array([[4, 0, -1], [11, 7, 3], [2, 5, 6]])
    got = item_log_probs(model, histories, items, batch=2)  # two batches
    with torch.no_grad():
        h = model.hidden_states(left_pad(histories, 5))[:, -1]
        want = torch.log_softmax(model.logits(h), dim=1).numpy()
    for b in range(3):
        for g in range(3):
            if items[b, g] < 0:
                assert np.isnan(got[b, g])
            else:
                assert got[b, g] == pytest.approx(want[b, items[b, g]], abs=1e-6)
    # the ranker's order is recommend's (history not excluded)
    top = recommend(model, histories, 12, exclude_history=False)
    full = item_log_probs(model, histories, top)
    assert (np.diff(full, axis=1) <= 1e-7).all()
