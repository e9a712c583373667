"""`sgrec judge --backend trained`: which examples the judge learns from (never a held-out user,
never a validation or test target, never a user's latest training example), the rows fed to
the sentence-transformers trainer, the tuned model reloaded from disk scoring identically, and
A2PO reading it live while withholding the semantic reward from the examples it trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import A2PO_RANK_RECIPE, make_sid_run
from sgrec_cli.cli import app
from sgrec_cli.data.split import Example
from sgrec_cli.errors import ArtifactError
from sgrec_cli.judge import step as judge_step
from sgrec_cli.judge.candidates import judge_contexts
from sgrec_cli.judge.step import formula_scores
from sgrec_cli.judge.trained import (
    ITEM_EMB,
    TRAIN_EXAMPLES,
    TrainExample,
    doc_text,
    encode,
    hit_examples,
    judge_training_examples,
    load_trained,
    query_text,
    training_rows,
)
from sgrec_cli.rl.step import judge_trained_mask
from sgrec_cli.rundir import Run

runner = CliRunner()
TRAINED = ["judge", "--backend", "trained", "--num-candidates", "6", "--train-batch-size", "8",
           "--heldout-fraction", "0.3", "--no-progress", "--json"]
A2PO = ["train", "--a2po", *A2PO_RANK_RECIPE,
        "--steps", "2", "--batch-users", "8", "--group-size", "4", "--rho",
        "1", "--eval-every", "2", "--valid-users", "0", "--no-progress", "--json", "--device",
        "cpu", "--advantage", "a2po"]


def _train(split: list[tuple[int, list[int], int]]) -> list[Example]:
    return [Example(u, tuple(h), t) for u, h, t in split]


def test_training_examples_skip_the_latest_and_other_users():
    train = _train([(0, [1], 2), (0, [1, 2], 3), (0, [1, 2, 3], 4), (0, [1, 2, 3, 4], 5),
                    (1, [7], 8), (1, [7, 8], 9),
                    (2, [5], 6), (2, [5, 6], 7),
                    (3, [4], 5)])
    got = judge_training_examples(train, {0, 1, 3}, positions=2)
    # user 0: examples 0..3, the latest (3) never; the last two before it; user 1: its first;
    # user 2 is not listed; user 3 has only its latest
    assert got == [TrainExample(0, 1, (1, 2), 3), TrainExample(0, 2, (1, 2, 3), 4),
                   TrainExample(1, 0, (7,), 8)]
    assert judge_training_examples(train, {0}, positions=9)[0] == TrainExample(0, 0, (1,), 2)
    # A2PO's mask of the same (user, position) pairs, in train order
    mask = judge_trained_mask(train, {(e.user, e.position) for e in got})
    assert mask.tolist() == [False, True, True, False, True, False, False, False, False]
    assert not judge_trained_mask(train, None).any()


def test_training_rows_and_texts():
    titles = ["a", "b", "c", "d", "e", "f"]
    docs = [f"doc {t}" for t in titles]
    ex = [TrainExample(0, 0, (0, 1), 2), TrainExample(1, 0, (3,), 4)]
    beams = [[2, 1, 3, 4, 5], [4, 0, -1]]  # the second keeps one usable item: dropped
    rows = training_rows(ex, beams, titles=titles, docs=docs, negatives=2, query_history=5,
                         seed=0)
    assert rows["anchor"] == ["Recent purchases, newest first: b; a"]
    assert rows["positive"] == ["doc c"]
    negs = {rows["negative_1"][0], rows["negative_2"][0]}
    assert len(negs) == 2 and negs <= {"doc d", "doc e", "doc f"}  # no target, no history
    assert query_text(titles, [0, 1, 2, 3], 2) == "Recent purchases, newest first: d; c"
    assert doc_text({"title": "Pipette.", "brand": "", "categories": ["Lab"]}) == "Pipette"
    assert doc_text({"title": "Pipette", "brand": "Acme"}) == "Pipette. Brand: Acme."


def test_hit_examples_keep_the_groups_whose_beams_hold_the_next_item():
    ex = [TrainExample(0, 0, (0,), 2), TrainExample(1, 0, (3,), 4), TrainExample(2, 1, (1,), 5)]
    beams = [[2, 1, 3], [0, 1, -1], np.array([5, 6])]
    kept, their = hit_examples(ex, beams)
    assert kept == [ex[0], ex[2]] and [list(b) for b in their] == [[2, 1, 3], [5, 6]]
    assert hit_examples([], []) == ([], [])
    res = runner.invoke(app, ["judge", "--run", "nowhere", "--backend", "trained",
                              "--train-on", "misses"])
    assert res.exit_code == 2 and "--train-on 'misses'" in res.stderr


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A toy run with an SFT generator and a trained judge; the examples and rows the judge
    step fed to the trainer are recorded."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fed: dict = {}
    real_rows = judge_step.training_rows

    def spy(examples, beams, **kw):
        fed["examples"] = list(examples)
        fed["rows"] = real_rows(examples, beams, **kw)
        return fed["rows"]

    mp = pytest.MonkeyPatch()
    mp.setattr(judge_step, "training_rows", spy)
    try:
        run = make_sid_run(tmp_path_factory.mktemp("trained_judge"))
        res = runner.invoke(app, ["train", "--run", str(run), "--epochs", "1", "--valid-users",
                                  "0", "--device", "cpu", "--no-progress"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, [*TRAINED, "--run", str(run)])
        assert res.exit_code == 0, res.output
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return run, json.loads(res.stdout), fed


def test_trainer_never_sees_heldout_users_or_later_targets(judged):
    run, summary, fed = judged
    contexts = [json.loads(x) for x in (run / "judge" / "contexts.jsonl").open()]
    heldout = {c["user"] for c in contexts if c["heldout"]}
    seqs = [json.loads(x)["items"] for x in (run / "data" / "sequences.jsonl").open()]
    items = [json.loads(x) for x in (run / "data" / "items.jsonl").open()]
    examples = fed["examples"]
    assert examples and summary["training"]["examples"] == len(examples)
    assert not heldout & {e.user for e in examples}
    for e in examples:
        s = seqs[e.user]
        # position t predicts s[t + 1]; the latest training target is s[-3] (then valid, test)
        assert e.target == s[e.position + 1] and e.position + 1 < len(s) - 3
        assert list(e.history) == s[: e.position + 1][-20:]
    # the positives fed to the trainer are exactly those examples' next items
    assert fed["rows"]["positive"] == [doc_text(items[e.target]) for e in examples]
    saved = np.load(run / "judge" / TRAIN_EXAMPLES)
    assert saved.tolist() == [[e.user, e.position] for e in examples]
    assert summary["backend"] == "trained" and summary["training"]["steps"] >= 1


def test_reloaded_judge_scores_identically_and_show_explains(judged):
    run, summary, _ = judged
    folder = run / "judge"
    r = Run(run)
    titles = [str(it.get("title")) for it in r.data.items()]
    config = json.loads((folder / "manifest.json").read_text())["config"]
    backend = load_trained(folder, titles, config["query_history"], device="cpu")
    # the item embeddings on disk are what the reloaded model computes
    docs = [doc_text(it) for it in r.data.items()]
    np.testing.assert_allclose(encode(backend.model, docs), np.load(folder / ITEM_EMB),
                               atol=1e-5)
    ctx = judge_contexts(r.data)
    pair_user, pair_item = np.load(folder / "pair_user.npy"), np.load(folder / "pair_item.npy")
    pos = {u: k for k, u in enumerate(ctx.users)}
    pair_ctx = np.asarray([pos[int(u)] for u in pair_user])
    scores, _ = formula_scores(backend.score, ctx, pair_ctx, pair_item, titles,
                               backend.queries(ctx.histories))
    np.testing.assert_array_equal(scores, np.load(folder / "aspects.npy"))
    # one query at a time (A2PO's live path) agrees with the batched one
    one, _, _ = backend.score(ctx.histories[0], pair_item[pair_ctx == 0])
    np.testing.assert_allclose(one, scores[pair_ctx == 0], atol=1e-5)

    res = runner.invoke(app, ["judge", "show", "--run", str(run), "--user", "u3"])
    assert res.exit_code == 0, res.output
    assert "trained" in res.stdout and "next-pick fit" in res.stdout


def test_load_trained_refuses_what_is_not_its_judge(judged, tmp_path):
    run, _, _ = judged
    with pytest.raises(ArtifactError, match="no tuned judge model"):
        load_trained(tmp_path, ["a"], 10, "cpu")
    copy = tmp_path / "judge"
    shutil.copytree(run / "judge", copy)
    with pytest.raises(ArtifactError, match="another catalogue"):
        load_trained(copy, ["a", "b"], 10, "cpu")


def test_a2po_reads_the_trained_judge_and_skips_its_training_examples(judged, tmp_path,
                                                                      one_thread):
    run, _, _ = judged
    work = tmp_path / "run"
    shutil.copytree(run, work)
    res = runner.invoke(app, [*A2PO, "--run", str(work), "--examples", "latest"])
    assert res.exit_code == 0, res.output
    log = [json.loads(x) for x in (work / "a2po" / "train_log.jsonl").open()]
    # every user's latest example is outside the judge's training set: all groups judged
    assert all(r["semantic_share"] == 1 for r in log if "semantic_share" in r), log
    assert json.loads(res.stdout)["semantic"].startswith("trained judge")

    res = runner.invoke(app, [*A2PO, "--run", str(work), "--examples", "all", "--tag", "all",
                              "--steps", "6", "--eval-every", "6"])
    assert res.exit_code == 0, res.output
    assert "no semantic reward on the" in res.stderr
    log = [json.loads(x) for x in (work / "a2po-all" / "train_log.jsonl").open()]
    shares = [r["semantic_share"] for r in log if "semantic_share" in r]
    assert min(shares) < 1  # some drawn groups were the judge's own training examples


def test_a_judge_from_another_run_is_refused(judged, tmp_path, one_thread):
    run, _, _ = judged
    other = make_sid_run(tmp_path / "other")
    res = runner.invoke(app, ["train", "--run", str(other), "--epochs", "1", "--valid-users",
                              "0", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    # the other run's SIDs are rebuilt with another seed: the copied judge was not built on them
    res = runner.invoke(app, ["build-sids", "--run", str(other), "--method", "rqkmeans",
                              "--codebook-size", "8", "--dedup", "suffix", "--collab-dim", "0",
                              "--seed", "3", "--cache-dir", str(tmp_path / "cache"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    shutil.copytree(run / "judge", Path(other) / "judge")
    res = runner.invoke(app, [*A2PO, "--run", str(other)])
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "judge" in res.stderr


def test_trained_options_are_checked(sid_run):
    for args, msg in ((["--train-batch-size", "1"], "--train-batch-size 1"),
                      (["--train-lr", "0"], "--train-lr"),
                      (["--train-negatives", "0"], "--train-negatives 0")):
        res = runner.invoke(app, ["judge", "--run", str(sid_run), "--backend", "trained",
                                  "--no-progress", *args])
        assert res.exit_code == 2 and msg in res.stderr, (args, res.output)
