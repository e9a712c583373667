"""Leave-one-out split: hand-computed golden cases and the no-leakage property on real data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgrec_cli.config import PrepareConfig
from sgrec_cli.data.split import Example, leave_one_out
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.rundir import load_data


def test_golden_split_of_six_items():
    # s = 10 11 12 13 14 15: test 15 | 10..14, valid 14 | 10..13,
    # train: 10->11, 10 11->12, 10 11 12->13  (n-3 = 3 examples)
    train, valid, test = leave_one_out(7, [10, 11, 12, 13, 14, 15], max_history=20)
    assert test == Example(7, (10, 11, 12, 13, 14), 15)
    assert valid == Example(7, (10, 11, 12, 13), 14)
    assert train == [Example(7, (10,), 11), Example(7, (10, 11), 12),
                     Example(7, (10, 11, 12), 13)]


def test_golden_truncation():
    # max_history 2 keeps the two most recent items of every history
    train, valid, test = leave_one_out(0, [1, 2, 3, 4, 5, 6], max_history=2)
    assert test.history == (4, 5) and valid.history == (3, 4)
    assert [e.history for e in train] == [(1,), (1, 2), (2, 3)]


def test_three_items_gives_no_training_example():
    train, valid, test = leave_one_out(0, [1, 2, 3], max_history=20)
    assert train == [] and valid == Example(0, (1,), 2) and test == Example(0, (1, 2), 3)


def test_too_short_is_refused():
    with pytest.raises(ValueError):
        leave_one_out(0, [1, 2], max_history=20)


@given(seq=st.lists(st.integers(0, 50), min_size=3, max_size=40, unique=True),
       max_history=st.integers(1, 25))
def test_split_properties(seq, max_history):
    train, valid, test = leave_one_out(0, seq, max_history)
    assert len(train) == len(seq) - 3
    targets = [e.target for e in train]
    assert test.target not in targets and valid.target not in targets
    for e in [*train, valid, test]:
        assert 1 <= len(e.history) <= max_history
        pos = seq.index(e.target)
        assert list(e.history) == seq[max(0, pos - max_history):pos]  # strictly before target


@pytest.mark.parametrize("max_history", [20, 3])
def test_no_leakage_on_real_data(scientific, tmp_path, max_history):
    prepare(tmp_path, PrepareConfig(source=str(scientific), max_history=max_history))
    data = load_data(tmp_path)
    seqs = data.sequences()
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    assert len(valid) == len(test) == len(seqs)
    train_targets: dict[int, list[int]] = {}
    for e in train:
        train_targets.setdefault(e.user, []).append(e.target)
        assert len(e.history) <= max_history
    for va, te in zip(valid, test, strict=True):
        seq = seqs[te.user]
        assert te.target == seq[-1] and va.target == seq[-2]
        assert te.target not in train_targets.get(te.user, [])
        assert va.target not in train_targets.get(va.user, [])
        assert te.target not in te.history  # no repeats in this dataset
        assert list(te.history) == seq[:-1][-max_history:]
        assert list(va.history) == seq[:-2][-max_history:]
    assert max(len(e.history) for e in train) == max_history
