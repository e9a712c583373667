"""SFT of the generator: it learns a deterministic next-item rule, resumes exactly, validates."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import sid_catalog
from sgrec_cli.config import GeneratorConfig, SFTConfig
from sgrec_cli.data.split import split_all
from sgrec_cli.errors import ArtifactError, ConfigError
from sgrec_cli.generator.decode import predict_topk
from sgrec_cli.generator.model import load_generator
from sgrec_cli.generator.sft import encode_examples, length_grouped_batches, train_sft
from sgrec_cli.generator.tokens import SidVocab
from sgrec_cli.generator.trie import SidTrie

N_ITEMS = 60
SIZES = [4, 4, 4]
# SID-token inputs: these tests also resume checkpoints made before the input modes existed
TINY = GeneratorConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.1,
                       input="tokens")


@pytest.fixture(scope="module")
def data():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls; another process shares the CPU
    rng = np.random.default_rng(0)
    codes, _, _ = sid_catalog(SIZES, N_ITEMS, rng)
    # next item = (last item + 1) % N: learnable from the last history item alone
    starts = rng.integers(0, N_ITEMS, size=80)
    seqs = [[(int(s) + t) % N_ITEMS for t in range(8)] for s in starts]
    train, valid, test = split_all(seqs, max_history=20)
    yield codes, train, valid, test
    torch.set_num_threads(threads)


def small_cfg(**kw) -> SFTConfig:
    base = dict(epochs=12, batch_size=32, lr=5e-3, warmup_steps=10, num_beams=10,
                valid_users=40, patience=20, seed=0, model=TINY)
    base.update(kw)
    return SFTConfig(**base)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    codes, train, valid, _ = data
    out = tmp_path_factory.mktemp("sft")
    # no dropout here: learns faster (the resume test keeps dropout on, to exercise the RNG)
    summary = train_sft(train, valid, codes, SIZES, small_cfg(model=replace(TINY, dropout=0.0)),
                        out)
    return out, summary


def test_encode_examples(data):
    codes, train, _, _ = data
    vocab = SidVocab(SIZES)
    ids, mask, labels, targets = encode_examples(train[:5], codes, vocab, max_history=3)
    assert ids.shape == mask.shape and ids.shape[0] == 5
    assert labels.shape == (5, 3)
    assert vocab.tokens_to_codes(labels).tolist() == codes[[e.target for e in train[:5]]].tolist()
    assert targets.tolist() == [e.target for e in train[:5]]
    assert int(mask.sum(1).max()) <= 3 * 3 + 1
    # item inputs: one position per history item, item index + 1, no EOS
    ids, mask, _, _ = encode_examples(train[:5], codes, vocab, max_history=3, per_item=True)
    for row, m, ex in zip(ids.tolist(), mask.tolist(), train[:5], strict=True):
        assert row[: sum(m)] == [i + 1 for i in ex.history[-3:]]


def test_learns_next_item(data, trained):
    out, summary = trained
    rows = read_log(out)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert set(rows[0]) >= {"epoch", "loss", "valid_loss", "lr", "valid_recall@10",
                            "valid_ndcg@10", "seconds"}
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    chance = 10 / N_ITEMS
    assert summary["best"]["valid_recall@10"] > 3 * chance
    assert summary["best_epoch"] == max(rows, key=lambda r: r["valid_ndcg@10"])["epoch"]
    assert (out / "best" / "model.safetensors").is_file()
    assert (out / "checkpoint" / "state.json").is_file()


def test_predictions_valid_and_distinct(data, trained):
    codes, _, _, test = data
    out, _ = trained
    model, _, vocab = load_generator(out / "best")
    trie = SidTrie.from_codes(codes, SIZES)
    topk = predict_topk(model, vocab, trie, [e.history for e in test], codes, k=10,
                        num_beams=12, batch=16)
    assert topk.shape == (len(test), 10) and topk.dtype == np.int64
    assert ((topk >= 0) & (topk < N_ITEMS)).all()
    assert all(len(set(row.tolist())) == 10 for row in topk)
    hits = np.mean([e.target in row for e, row in zip(test, topk, strict=True)])
    assert hits > 2 * 10 / N_ITEMS  # chance is 10 / N_ITEMS


def test_resume_is_exact(data, tmp_path):
    codes, train, valid, _ = data
    cfg = small_cfg(epochs=4, batch_size=64, valid_users=20)
    a, b = tmp_path / "a", tmp_path / "b"
    sa = train_sft(train, valid, codes, SIZES, cfg, a)
    # interrupted after 2 epochs (same config, hence the same LR schedule), then resumed
    sb1 = train_sft(train, valid, codes, SIZES, cfg, b, stop_after=2)
    assert sb1["epochs_run"] == 2 and not sb1["finished"]
    torch.manual_seed(123)  # whatever happened in between must not matter
    sb = train_sft(train, valid, codes, SIZES, cfg, b, resume=True)
    assert sb["epochs_run"] == 4 and sb["epochs_this_call"] == 2
    la, lb = read_log(a), read_log(b)
    assert [r["epoch"] for r in lb] == [1, 2, 3, 4]
    for ra, rb in zip(la, lb, strict=True):
        assert abs(ra["loss"] - rb["loss"]) < 1e-6
        assert ra["lr"] == rb["lr"] and ra["valid_ndcg@10"] == rb["valid_ndcg@10"]
    assert sa["best_epoch"] == sb["best_epoch"] and sa["best"] == sb["best"]
    wa = load_file(str(a / "best" / "model.safetensors"))
    wb = load_file(str(b / "best" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming a finished run trains nothing; a changed option is refused
    again = train_sft(train, valid, codes, SIZES, cfg, b, resume=True)
    assert again["epochs_this_call"] == 0 and again["best"] == sb["best"]
    with pytest.raises(ConfigError, match="lr"):
        train_sft(train, valid, codes, SIZES, replace(cfg, lr=1e-2), b, resume=True)
    # a checkpoint made before the model's input/scoring options existed resumes (it ran with
    # SID-token inputs, the default of the time, even though items are the default today),
    # and one whose modes differ is refused
    state_file = b / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    for name in ("input", "text", "recency", "ids", "score", "hybrid_weight"):
        del state["config"]["model"][name]
    state_file.write_text(json.dumps(state))
    assert train_sft(train, valid, codes, SIZES, cfg, b, resume=True)["epochs_this_call"] == 0
    items = replace(cfg, model=replace(cfg.model, input="items"))
    with pytest.raises(ConfigError, match="model"):
        train_sft(train, valid, codes, SIZES, items, b, resume=True)
    # a checkpoint that recorded its warm-up as a number resumes under the default warm-up
    # when that number is the default's for this run, and is refused otherwise
    auto = replace(cfg, warmup_steps=None)
    default_warmup = auto.warmup(-(-len(train) // 64) * 4)  # 4 epochs of ceil(rows / 64) steps
    for recorded, ok in ((default_warmup, True), (default_warmup + 1, False)):
        state["config"]["warmup_steps"] = recorded
        state_file.write_text(json.dumps(state))
        if ok:
            assert train_sft(train, valid, codes, SIZES, auto, b,
                             resume=True)["epochs_this_call"] == 0
        else:
            with pytest.raises(ConfigError, match="warmup"):
                train_sft(train, valid, codes, SIZES, auto, b, resume=True)
    state["config"]["warmup_steps"] = cfg.warmup_steps
    state_file.write_text(json.dumps(state))
    # a torn checkpoint file is one clear error, not a safetensors traceback
    (b / "checkpoint" / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="unusable checkpoint"):
        train_sft(train, valid, codes, SIZES, cfg, b, resume=True)


@pytest.mark.parametrize("kw, bad", [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": -1}, "batch-size"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -0.1}, "weight-decay"),
    ({"warmup_steps": 1.5}, "warmup-steps"),
    ({"num_beams": 5}, "num-beams"),
    ({"valid_users": -1}, "valid-users"),
    ({"patience": 0}, "patience"),
    ({"device": "tpu"}, "device"),
    ({"epochs": True}, "epochs"),  # a bool is no count
    ({"model": GeneratorConfig(d_model=30, num_heads=4)}, "d_model"),
    ({"model": {"dropout": 1.5}}, "dropout"),
    ({"model": {"width": 3}}, "width"),
])
def test_bad_config(kw, bad):
    with pytest.raises(ConfigError, match=bad):
        SFTConfig(**kw)


def test_warmup_default_is_a_share_of_the_run_capped():
    # no --warmup-steps: 10% of the run's optimizer steps, at most 200 (a 250-step run on a
    # small dataset warms up for 25 steps, not 200 of its 250)
    assert SFTConfig().warmup(250) == 25
    assert SFTConfig().warmup(9) == 0
    assert SFTConfig().warmup(6500) == 200
    # given: as given, cut to the run's length
    assert SFTConfig(warmup_steps=300).warmup(6500) == 300
    assert SFTConfig(warmup_steps=300).warmup(120) == 120
    assert SFTConfig(warmup_steps=0).warmup(6500) == 0


def test_length_grouped_batches():
    lengths = torch.tensor(np.random.default_rng(0).integers(1, 62, size=1003))
    batches = length_grouped_batches(lengths, 10, torch.Generator().manual_seed(0), group=5)
    assert len(batches) == 101  # ceil(1003 / 10): only the last group is partial
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(1003))  # every example exactly once
    # inside a group of 5 batches lengths are sorted, so a batch's lengths are close together:
    # the mean padding per batch is far below that of random batches
    pad = np.mean([float((lengths[b].max() - lengths[b]).float().mean()) for b in batches])
    rand = torch.randperm(1003, generator=torch.Generator().manual_seed(1)).split(10)
    pad_rand = np.mean([float((lengths[b].max() - lengths[b]).float().mean()) for b in rand])
    assert pad < 0.3 * pad_rand
    again = length_grouped_batches(lengths, 10, torch.Generator().manual_seed(0), group=5)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
