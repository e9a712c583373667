"""Generator input and scoring modes: item-level (pooled SID) inputs with text
features, the dense head and hybrid scoring; save/load, golden maths, validity, and eval /
recommend reading the modes from the model's own config."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import A2PO_RANK_RECIPE, make_sid_run, sid_catalog
from sgrec_cli.artifacts import sha256_file
from sgrec_cli.cli import app
from sgrec_cli.errors import ConfigError
from sgrec_cli.eval.metrics import ndcg_gains, ranks_of_targets
from sgrec_cli.generator.beam import constrained_beam_search
from sgrec_cli.generator.config import GeneratorConfig
from sgrec_cli.generator.decode import (
    HYBRID_WEIGHT_GRID,
    choose_weight,
    drop_seen,
    hybrid_weight_curve,
    predict_topk,
)
from sgrec_cli.generator.hybrid import hybrid_scores, hybrid_search, sid_log_probs
from sgrec_cli.generator.model import build_model, load_generator, save_generator
from sgrec_cli.generator.tokens import DECODER_START

SIZES = [6, 6, 6]
N_ITEMS = 120
runner = CliRunner()


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    codes, vocab, trie = sid_catalog(SIZES, N_ITEMS, rng)
    text = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cfg = GeneratorConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, input="items",
                          text=True, ids=True, score="hybrid", hybrid_weight=0.3)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, codes=codes, text=text).eval()
    with torch.no_grad():  # as if trained (they start at zero)
        model.item_emb.weight.normal_(generator=torch.Generator().manual_seed(2))
    histories = [list(rng.choice(N_ITEMS, size=rng.integers(1, 8), replace=False))
                 for _ in range(7)]
    yield codes, vocab, trie, cfg, model, histories
    torch.set_num_threads(threads)


def test_item_inputs_are_pooled_sid_embeddings(setup):
    codes, vocab, _, _, model, histories = setup
    ids, mask = vocab.encode_history(histories, codes, 5, per_item=True)
    assert ids.shape[1] == 5 and mask.sum(1).tolist() == [min(len(h), 5) for h in histories]
    emb = model.embed_inputs(ids)
    u, pos = 0, 0
    item = histories[u][-min(len(histories[u]), 5):][pos]
    tokens = torch.as_tensor(vocab.code_tokens(codes[[item]]))[0]
    expect = (model.shared(tokens).sum(0) + model.text_proj(model.item_text[item])
              + model.item_emb.weight[item])
    torch.testing.assert_close(emb[u, pos], expect)
    assert (emb[mask == 0] == 0).all()  # padding is a zero vector (and masked)


def test_save_load_identical_scores(setup, tmp_path):
    codes, vocab, trie, cfg, model, histories = setup
    save_generator(model, cfg, tmp_path / "gen")
    loaded, cfg2, _ = load_generator(tmp_path / "gen")
    assert cfg2 == cfg
    for score in ("generator", "hybrid"):
        a = predict_topk(model, vocab, trie, histories, codes, 10, 10, with_scores=True,
                         score=score)
        b = predict_topk(loaded, vocab, trie, histories, codes, 10, 10, with_scores=True,
                         score=score)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_item_ids_start_at_zero(setup):
    """A fresh model with item id embeddings is the model without them, number for number
    (same seed): the ids add a residual that training grows."""
    codes, vocab, trie, cfg, _, histories = setup
    text = setup[4].item_text.numpy()
    models = []
    for ids in (True, False):
        torch.manual_seed(0)
        models.append(build_model(dataclasses.replace(cfg, ids=ids), vocab,
                                  codes=codes, text=text).eval())
    assert not models[0].item_emb.weight.any()
    for score in ("generator", "hybrid"):
        a, b = (predict_topk(m, vocab, trie, histories, codes, 10, 10, with_scores=True,
                             score=score) for m in models)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_training_dense_loss_is_the_dense_head(setup):
    """The training forward reads the user vector from its own decoder pass (position 0);
    it equals the cross-entropy of ``dense_log_probs``, which runs one decoder step."""
    codes, vocab, _, _, model, histories = setup
    ids, mask = vocab.encode_history(histories, codes, 6, per_item=True)
    targets = torch.arange(len(histories))
    labels = torch.as_tensor(vocab.code_tokens(codes[targets.numpy()]))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels, items=targets)
        lp = model.dense_log_probs(model.encode(ids, mask), mask)
        sid = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    expect = torch.nn.functional.nll_loss(lp, targets)
    torch.testing.assert_close(out.dense_loss, expect)
    torch.testing.assert_close(out.loss, sid + expect)


def test_hybrid_scores_golden():
    gen = torch.tensor([[-1.0, -2.0, float("-inf")]])
    dense = torch.tensor([[-3.0, -0.5, -1.0]])
    # (1 - 0.25) * gen + 0.25 * dense, by hand
    expect = torch.tensor([[-1.5, -1.625, float("-inf")]])
    torch.testing.assert_close(hybrid_scores(gen, dense, 0.25), expect)
    torch.testing.assert_close(hybrid_scores(gen, dense, 0.0), gen)
    torch.testing.assert_close(hybrid_scores(gen, dense, 1.0), dense)
    with pytest.raises(ValueError):
        hybrid_scores(gen, dense, 1.5)


def test_hybrid_search_is_the_documented_combination(setup):
    """Every returned score is (1 - w) log p_gen + w log p_dense, with log p_gen computed
    independently (the full T5 forward under teacher forcing) and log p_dense the dense
    head's log-softmax; the list is the best of beams + dense top items."""
    codes, vocab, trie, cfg, model, histories = setup
    ids, mask = vocab.encode_history(histories, codes, 6, per_item=True)
    items, scores = hybrid_search(model, ids, mask, trie, vocab, 8, topk=8)
    hidden = model.encode(ids, mask)
    dense = model.dense_log_probs(hidden, mask)
    for u in range(len(histories)):
        row = items[u]
        tok = torch.as_tensor(vocab.code_tokens(codes[row.numpy()]))  # (k, L)
        start = torch.full((len(row), 1), DECODER_START)
        logits = model(input_ids=ids[u:u + 1].expand(len(row), -1),
                       attention_mask=mask[u:u + 1].expand(len(row), -1),
                       decoder_input_ids=torch.cat([start, tok[:, :-1]], 1)).logits
        lp = torch.log_softmax(logits, -1).gather(2, tok[:, :, None])[:, :, 0].sum(1)
        expect = (1 - cfg.hybrid_weight) * lp + cfg.hybrid_weight * dense[u, row]
        torch.testing.assert_close(scores[u], expect, rtol=1e-4, atol=1e-4)
        assert (scores[u][:-1] >= scores[u][1:]).all()
    # the candidates: nothing outside beams + dense top-8 is ranked
    beams, beam_scores = constrained_beam_search(model, ids, mask, trie, vocab, 8)
    top_dense = dense.topk(8, dim=1).indices
    for u in range(len(histories)):
        assert set(items[u].tolist()) <= set(beams[u].tolist()) | set(top_dense[u].tolist())
    # teacher-forced log p_gen of the beams equals the beam scores
    gen = sid_log_probs(model, hidden, mask, model.item_tokens[beams], vocab)
    torch.testing.assert_close(gen, beam_scores, rtol=1e-4, atol=1e-4)


def test_choose_weight_golden():
    assert choose_weight({0.0: 0.1, 0.5: 0.3, 1.0: 0.2}, prefer=0.5) == 0.5
    assert choose_weight({0.0: 0.1, 0.7: 0.3, 1.0: 0.2}, prefer=0.5) == 0.7
    # a tie goes to the weight nearest the preferred one, then to the smaller
    assert choose_weight({0.2: 0.3, 0.6: 0.3, 0.9: 0.1}, prefer=0.5) == 0.6
    assert choose_weight({0.4: 0.3, 0.6: 0.3}, prefer=0.5) == 0.4
    with pytest.raises(ValueError):
        choose_weight({}, prefer=0.5)


def test_weight_curve_is_predict_topk_at_each_weight(setup):
    """One pass over the candidates scores every weight exactly as predict_topk would, the
    history items excluded (predict_topk's exclusion, then drop_seen)."""
    codes, vocab, trie, cfg, model, histories = setup
    grid = (0.0, 0.3, 1.0)

    def listed(k):
        items, scores = predict_topk(model, vocab, trie, histories, codes, 16, 8,
                                     with_scores=True, score="hybrid", exclude_history=True)
        return drop_seen(items, scores, histories, k)[0]

    try:
        model.gen = dataclasses.replace(cfg, hybrid_weight=1.0)  # targets: the dense top item
        targets = listed(1)[:, 0].tolist()
        curve = hybrid_weight_curve(model, vocab, trie, histories, targets, codes, 8, k=5,
                                    batch=3, grid=grid)
        assert list(curve) == list(grid) and curve[1.0] == 1.0
        for w in grid:
            model.gen = dataclasses.replace(cfg, hybrid_weight=w)
            expect = float(np.mean(ndcg_gains(ranks_of_targets(listed(5), np.asarray(targets)),
                                              5)))
            assert curve[w] == pytest.approx(expect, abs=1e-12)
        unfiltered = predict_topk(model, vocab, trie, histories, codes, 5, 8, score="hybrid")
        assert any(set(row.tolist()) & set(h) for row, h in zip(unfiltered, histories,
                                                                strict=True))
    finally:
        model.gen = cfg
    assert len(set(curve.values())) > 1  # the weight changes the lists here


@pytest.mark.parametrize("score", ["generator", "hybrid"])
def test_never_invalid_or_duplicate(setup, score):
    codes, vocab, trie, _, model, histories = setup
    items, scores = predict_topk(model, vocab, trie, histories, codes, 30, 30,
                                 with_scores=True, score=score, exclude_history=True)
    for u, row in enumerate(items):
        real = row[row >= 0]
        assert len(real) == 30 and len(set(real.tolist())) == 30
        assert ((real >= 0) & (real < N_ITEMS)).all()
        assert np.all(np.diff(scores[u]) <= 1e-6)


def test_mode_validation():
    with pytest.raises(Exception, match="text features need item inputs"):
        GeneratorConfig(input="tokens", text=True).validate()
    with pytest.raises(Exception, match="model input 'pixels' is not known"):
        GeneratorConfig(input="pixels").validate()
    with pytest.raises(Exception, match="model score 'mixed' is not known"):
        GeneratorConfig(score="mixed").validate()
    with pytest.raises(Exception, match="item id embeddings need item inputs"):
        GeneratorConfig(input="tokens", ids=True).validate()
    # the dense head's item vectors
    GeneratorConfig(input="tokens", ids=True, score="hybrid").validate()


# ------------------------------------------------------------------ through the CLI, on a run


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = make_sid_run(tmp_path_factory.mktemp("modes"))
    res = runner.invoke(app, ["train", "--run", str(run), "--epochs", "2", "--valid-users",
                              "0", "--device", "cpu", "--input", "items", "--text",
                              "--recency", "--item-ids", "--score", "hybrid", "--hybrid-weight",
                              "0.5", "--json"])  # fixed: a chosen weight may be 0 (= generator)
    assert res.exit_code == 0, res.output
    yield run
    torch.set_num_threads(threads)


def test_eval_and_recommend_read_modes_from_the_model(hybrid_run):
    run = hybrid_run
    meta = json.loads((run / "sft" / "best" / "generator.json").read_text())
    assert meta["generator"]["input"] == "items" and meta["generator"]["score"] == "hybrid"
    assert meta["generator"]["ids"] is True and meta["generator"]["recency"] is True
    res = runner.invoke(app, ["train", "--run", str(run), "--input", "tokens", "--recency"])
    assert res.exit_code == 2 and "recency embeddings need item inputs" in res.output
    res = runner.invoke(app, ["eval", "--run", str(run), "--model", "sft", "--model",
                              "sft@hybrid", "--model", "sft@generator", "--json"])
    assert res.exit_code == 0, res.output
    top = {m: [json.loads(line)["top20"] for line in (run / "eval" / f"{m}.test.jsonl").open()]
           for m in ("sft", "sft@hybrid", "sft@generator")}
    assert top["sft"] == top["sft@hybrid"]  # the model's own scoring is hybrid
    assert top["sft"] != top["sft@generator"]
    # recommend: the model's own (hybrid) scoring, and the pure generator when asked
    hist = "1,2,3"
    recs = {}
    for model in ("sft", "sft@hybrid", "sft@generator"):
        res = runner.invoke(app, ["recommend", "--run", str(run), "--history", hist, "--k", "5",
                                  "--model", model, "--json"])
        assert res.exit_code == 0, res.output
        recs[model] = json.loads(res.stdout)[0]["items"]
        ids = [x["id"] for x in recs[model]]
        assert len(set(ids)) == 5 and not {"1", "2", "3"} & set(ids)
    assert recs["sft"] == recs["sft@hybrid"]


def test_hybrid_weight_chosen_on_validation(hybrid_run, tmp_path):
    """By default the saved weight is the grid's best on the validation users; a weight given
    with --hybrid-weight is kept."""
    import shutil

    meta = json.loads((hybrid_run / "sft" / "best" / "generator.json").read_text())
    assert meta["generator"]["hybrid_weight"] == 0.5  # given: kept, no curve
    assert "hybrid_weight" not in json.loads((hybrid_run / "sft" / "summary.json").read_text())
    run = tmp_path / "tuned"
    shutil.copytree(hybrid_run / "data", run / "data")
    shutil.copytree(hybrid_run / "sids", run / "sids")
    res = runner.invoke(app, ["train", "--run", str(run), "--epochs", "1", "--valid-users",
                              "0", "--device", "cpu", "--input", "items", "--score", "hybrid",
                              "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "sft" / "summary.json").read_text())
    tuned = summary["hybrid_weight"]
    curve = {float(w): v for w, v in tuned["valid_ndcg@10"].items()}
    assert sorted(curve) == list(HYBRID_WEIGHT_GRID) and tuned["trained_with"] == 0.5
    meta = json.loads((run / "sft" / "best" / "generator.json").read_text())
    assert meta["generator"]["hybrid_weight"] == tuned["chosen"] == choose_weight(curve, 0.5)
    assert summary["modes"]["hybrid_weight"] == tuned["chosen"]


def test_unknown_mode_in_model_folder_is_refused(hybrid_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(hybrid_run, run)
    cfg_file = run / "sft" / "best" / "generator.json"
    manifest_file = run / "sft" / "manifest.json"

    def rewrite(meta: dict) -> None:
        """As a newer sgrec would write it: the manifest matches the edited config."""
        cfg_file.write_text(json.dumps(meta))
        manifest = json.loads(manifest_file.read_text())
        manifest["outputs"]["best/generator.json"] = sha256_file(cfg_file)
        manifest_file.write_text(json.dumps(manifest))

    meta = json.loads(cfg_file.read_text())
    rewrite({**meta, "generator": {**meta["generator"], "input": "pixels"}})
    for args in (["eval", "--model", "sft"], ["recommend", "--history", "1,2"]):
        res = runner.invoke(app, [*args, "--run", str(run)])
        assert res.exit_code == 2
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "model input 'pixels' is not known" in lines[0], res.output
    # a config that does not describe the weights: one line too
    rewrite({**meta, "generator": {**meta["generator"], "score": "generator"}})
    res = runner.invoke(app, ["recommend", "--run", str(run), "--history", "1,2"])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "does not match generator.json" in lines[0] and "dense_proj" in lines[0]


def test_hybrid_needs_a_dense_head(setup):
    codes, vocab, trie, _, _, histories = setup
    torch.manual_seed(0)
    plain = build_model(GeneratorConfig(d_model=32, num_layers=1, num_heads=4, d_ff=64,
                                        input="items"), vocab, codes=codes).eval()
    with pytest.raises(ConfigError, match="hybrid scoring needs a generator trained with"):
        predict_topk(plain, vocab, trie, histories, codes, 5, 5, score="hybrid")
    with pytest.raises(ConfigError, match="score 'mixed' is not known"):
        predict_topk(plain, vocab, trie, histories, codes, 5, 5, score="mixed")


def test_a2po_fine_tunes_an_item_input_hybrid_model(hybrid_run, tmp_path):
    """A2PO trains the generator of an items/text/hybrid model (the dense head stays) and saves
    a model of the same modes that eval scores as hybrid."""
    import shutil

    from sgrec_cli.generator.model import load_generator

    run = tmp_path / "run"
    shutil.copytree(hybrid_run, run)
    # the judge's candidates come from the generator's own (hybrid) scoring
    res = runner.invoke(app, ["judge", "--run", str(run), "--num-candidates", "6",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--run", str(run), "--a2po", *A2PO_RANK_RECIPE,
                              "--advantage", "biz", "--steps", "2",
                              "--batch-users", "4", "--group-size", "4",
                              "--eval-every", "1", "--valid-users", "0", "--lr", "1e-3",
                              "--device", "cpu", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    sft, cfg_sft, _ = load_generator(run / "sft" / "best")
    tuned, cfg_tuned, _ = load_generator(run / "a2po" / "best")
    assert cfg_tuned == cfg_sft
    torch.testing.assert_close(tuned.dense_proj.weight, sft.dense_proj.weight)
    res = runner.invoke(app, ["eval", "--run", str(run), "--model", "a2po", "--json"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("score", ["generator", "hybrid"])
def test_sft_validation_excludes_history_items(setup, score):
    """SFT's per-epoch validation scores lists without the user's history items, as
    `sgrec eval` does: a target the model ranks in its top 10 but that is in the history
    counts 0."""
    from sgrec_cli.config import SFTConfig
    from sgrec_cli.data.split import Example
    from sgrec_cli.generator.sft import _evaluate

    codes, vocab, trie, cfg, model, histories = setup
    try:
        model.gen = dataclasses.replace(cfg, score=score)
        top = predict_topk(model, vocab, trie, histories, codes, 10, 10)
        valid = [Example(user=u, history=tuple(h), target=int(next(i for i in row if i in h)))
                 for u, (h, row) in enumerate(zip(histories, top, strict=True))
                 if set(row.tolist()) & set(h)]
        assert valid, "the fixture needs a user with a history item in the top 10"
        sft_cfg = SFTConfig(num_beams=10, batch_size=4)
        metrics = _evaluate(model, vocab, trie, valid, codes, sft_cfg, max_history=20)
        assert metrics["ndcg@10"] == 0.0 and metrics["recall@10"] == 0.0
        # the same users with a target outside the history: its first non-history item
        items, scores = predict_topk(model, vocab, trie, [e.history for e in valid], codes, 10,
                                     10, with_scores=True, exclude_history=True)
        kept = drop_seen(items, scores, [e.history for e in valid], 10)[0]
        fresh = [dataclasses.replace(e, target=int(row[0])) for e, row in zip(valid, kept,
                                                                             strict=True)]
        metrics = _evaluate(model, vocab, trie, fresh, codes, sft_cfg, max_history=20)
        assert metrics["ndcg@10"] == 1.0
    finally:
        model.gen = cfg


def test_generator_saved_before_input_modes_loads_as_tokens(setup, tmp_path):
    """A generator.json without ``input`` was written when SID tokens were the only (and the
    default) input; it still loads as one, whatever today's default is."""
    import json

    codes, vocab, _, _, _, histories = setup
    cfg = GeneratorConfig(d_model=32, num_layers=1, num_heads=4, d_ff=64, input="tokens")
    torch.manual_seed(0)
    model = build_model(cfg, vocab, codes=codes).eval()
    save_generator(model, cfg, tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    del meta["generator"]["input"]
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    loaded, got, _ = load_generator(tmp_path)
    assert got.input == "tokens" and GeneratorConfig().input == "items"
    ids, mask = vocab.encode_history(histories, codes, 20, per_item=False)
    with torch.no_grad():
        np.testing.assert_array_equal(model.encode(ids, mask).numpy(),
                                      loaded.encode(ids, mask).numpy())


def test_recency_embeddings_by_distance_from_the_end(setup, tmp_path):
    """--recency adds, at each history position, the embedding of its distance from the most
    recent item (hand-checked on right-padded rows); it starts at zero, so a fresh model is
    the model without it; it is saved and read back with the model."""
    codes, vocab, trie, _, _, histories = setup
    base = GeneratorConfig(d_model=32, num_layers=1, num_heads=4, d_ff=64, input="items")
    with_rec = dataclasses.replace(base, recency=True)
    models = []
    for cfg in (base, with_rec):
        torch.manual_seed(0)
        models.append(build_model(cfg, vocab, codes=codes).eval())
    ids, mask = vocab.encode_history(histories, codes, 20, per_item=True)
    with torch.no_grad():
        np.testing.assert_array_equal(models[0].encode(ids, mask).numpy(),
                                      models[1].encode(ids, mask).numpy())
        model = models[1]
        model.recency_emb.weight.normal_(generator=torch.Generator().manual_seed(3))
        ids, mask = vocab.encode_history([[5, 6, 7], [9]], codes, 20, per_item=True)
        got = model.embed_inputs(ids)
        rec = model.recency_emb.weight
        pooled = model.item_vectors(torch.tensor([[5, 6, 7], [9, 0, 0]]))
        np.testing.assert_allclose(got[0].numpy(), (pooled[0] + rec[[2, 1, 0]]).numpy(),
                                   rtol=1e-6)
        np.testing.assert_allclose(got[1, 0].numpy(), (pooled[1, 0] + rec[0]).numpy(),
                                   rtol=1e-6)
        assert not got[1, 1:].any()  # padding stays zero
        save_generator(model, with_rec, tmp_path)
        loaded, cfg, _ = load_generator(tmp_path)
        assert cfg.recency
        ids, mask = vocab.encode_history(histories, codes, 20, per_item=True)
        np.testing.assert_array_equal(model.encode(ids, mask).numpy(),
                                      loaded.encode(ids, mask).numpy())
        assert not np.allclose(models[0].encode(ids, mask).numpy(),
                               loaded.encode(ids, mask).numpy())
    with pytest.raises(Exception, match="recency embeddings need item inputs"):
        GeneratorConfig(input="tokens", recency=True).validate()
