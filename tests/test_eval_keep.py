"""`sgrec eval` one model at a time: earlier results stay while their model and data are
unchanged, a retrained model's result is dropped (never shown stale), the comparisons cover every
model of the split, and an interrupted eval leaves the previous RUN/eval as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sgrec_cli import cli
from sgrec_cli.cli import app
from sgrec_cli.config import EvalConfig
from sgrec_cli.eval import step as ev
from sgrec_cli.render import comparison_line

runner = CliRunner()
BOOT = ["--n-boot", "200"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.out, "_width", 200)  # one line per comparison, unwrapped cells


def _cli(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def _eval(run, *models: str, split: str = "test") -> dict:
    args = [a for m in models for a in ("--model", m)]
    return json.loads(_cli("eval", "--run", str(run), *args, "--split", split, *BOOT, "--json"))


def _sasrec(run, seed: int = 0) -> None:
    _cli("train", "--run", str(run), "--model", "sasrec", "--epochs", "1", "--seed", str(seed),
         "--json")


def _stats(run) -> dict:
    return json.loads((run / "eval" / "stats.json").read_text())


def _src(model: str = "m1", data: str = "d1", beams=None) -> dict:
    return {"model_manifest": model, "data_manifest": data, "num_beams": beams}


def test_merge_plan_cases():
    recorded = {"same": _src(), "retrained": _src(), "gone": _src(), "new_data": _src(),
                "beams": _src(beams=20), "old": None, "popular": _src(model=None)}
    current = {"same": _src(), "retrained": _src(model="m2"), "gone": None,
               "new_data": _src(data="d2"), "beams": _src(beams=30), "old": _src(),
               "popular": _src(model=None)}
    kept, dropped = ev.merge_plan(recorded, current)
    assert kept == ["same", "popular"]
    assert dropped["retrained"] == "retrained since it was evaluated"
    assert "gone" in dropped["gone"] and "prepared again" in dropped["new_data"]
    assert "--num-beams 20" in dropped["beams"] and "older sgrec" in dropped["old"]
    # num_beams None in the current record: not compared (results of another split)
    assert ev.merge_plan({"g": _src(beams=20)}, {"g": _src()}) == (["g"], {})
    assert ev.merge_plan({}, {"x": _src()}) == ([], {})


def test_comparison_names_the_better_model():
    ranks = {"good": np.ones(50, dtype=np.int64), "bad": np.zeros(50, dtype=np.int64),
             "bad2": np.zeros(50, dtype=np.int64)}
    comps = ev.compare(ranks, n_boot=200, seed=0)
    assert [(c["a"], c["b"]) for c in comps[::2]] == [("good", "bad"), ("good", "bad2"),
                                                      ("bad", "bad2")]
    first = comps[0]
    assert first["diff"] == 1.0 and first["better"] == "good" and first["p_value"] < 0.05
    assert comps[-1]["better"] is None and comps[-1]["p_value"] == 1.0
    assert comparison_line(first).startswith("good − bad NDCG@10 +1.0000 [")
    assert comparison_line(first).endswith(": good better")
    assert "no significant difference at 0.05" in comparison_line(comps[-1])


def test_models_evaluated_one_at_a_time_are_all_kept_and_compared(sid_run):
    _sasrec(sid_run)
    _eval(sid_run, "popular")
    rep = _eval(sid_run, "sasrec")
    assert list(rep["models"]) == ["popular", "sasrec"]
    assert rep["kept"] == [{"split": "test", "model": "popular"}] and rep["dropped"] == []
    assert {(c["a"], c["b"], c["metric"]) for c in rep["comparisons"]} == {
        ("popular", "sasrec", "ndcg@10"), ("popular", "sasrec", "recall@10")}
    popular = rep["models"]["popular"]["computed_from"]
    assert popular["model_manifest"] is None and popular["num_beams"] is None
    assert rep["models"]["sasrec"]["computed_from"]["model_manifest"]
    # the same figures as evaluating both at once
    both = ev.run_step(sid_run, EvalConfig(models=("popular", "sasrec"), n_boot=200))
    assert both["comparisons"] == rep["comparisons"]
    # another split is kept beside it
    _eval(sid_run, "popular", split="valid")
    stats = _stats(sid_run)
    assert {s: list(v["models"]) for s, v in stats["splits"].items()} == {
        "test": ["popular", "sasrec"], "valid": ["popular"]}
    manifest = json.loads((sid_run / "eval" / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"stats.json", "popular.test.jsonl", "sasrec.test.jsonl",
                                        "popular.valid.jsonl"}
    assert "sasrec/manifest.json" in manifest["inputs"]
    text = _cli("eval", "--run", str(sid_run), "--model", "popular", *BOOT)
    assert "popular − sasrec NDCG@10" in text and "sasrec *" in text
    assert "kept from earlier evals" in text and "sasrec (test)" in text
    _cli("report", "--run", str(sid_run))
    assert (sid_run / "report" / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_retrained_model_is_dropped_then_evaluated_again(sid_run):
    _sasrec(sid_run)
    _eval(sid_run, "sasrec", "popular")
    # a new sasrec/manifest.json (another seed: a byte-identical retraining within the same
    # second could leave an identical manifest, whose result rightly still holds)
    _sasrec(sid_run, seed=1)
    rep = _eval(sid_run, "popular")
    assert list(rep["models"]) == ["popular"] and rep["comparisons"] == []
    assert rep["dropped"] == [{"split": "test", "model": "sasrec",
                               "reason": "retrained since it was evaluated"}]
    assert not (sid_run / "eval" / "sasrec.test.jsonl").exists()
    assert list(_stats(sid_run)["splits"]["test"]["models"]) == ["popular"]
    assert _stats(sid_run)["last_eval"]["dropped"] == rep["dropped"]
    _sasrec(sid_run, seed=2)
    text = _cli("eval", "--run", str(sid_run), "--model", "sasrec", *BOOT)
    assert "popular *" in text and "popular − sasrec" in text and "dropped" not in text
    # a model folder that is gone drops its result too
    import shutil

    shutil.rmtree(sid_run / "sasrec")
    text = _cli("eval", "--run", str(sid_run), "--model", "popular", *BOOT)
    assert "sasrec (test): dropped, its model folder is gone or unreadable" in text


def test_ranker_fusion_needs_sasrec_and_is_dropped_when_sasrec_is_retrained(sid_run):
    _cli("train", "--run", str(sid_run), "--epochs", "1", "--valid-users", "0", "--device",
         "cpu", "--no-progress", "--json")
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sft@ranker", *BOOT])
    assert res.exit_code == 2 and "sgrec train --model sasrec" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (sid_run / "eval").exists()
    _sasrec(sid_run)
    rep = _eval(sid_run, "sft@ranker", "sft")
    assert set(rep["models"]) == {"sft@ranker", "sft"}
    from sgrec_cli.rundir import Run

    models = _stats(sid_run)["splits"]["test"]["models"]
    assert models["sft@ranker"]["computed_from"]["ranker_manifest"] == Run(sid_run).manifest(
        "sasrec").digest
    assert "ranker_manifest" not in models["sft"]["computed_from"]
    assert models["sft@ranker"]["ranker_weight"] in [round(0.1 * i, 1) for i in range(11)]
    recs = json.loads(_cli("recommend", "--run", str(sid_run), "--model", "sft@ranker",
                           "--history", "1,2,3", "--k", "4", "--json"))
    ids = [x["id"] for x in recs[0]["items"]]
    assert len(set(ids)) == 4 and not {"1", "2", "3"} & set(ids)
    _sasrec(sid_run, seed=1)  # the generator is unchanged, its fused result is not
    rep = _eval(sid_run, "popular")
    assert set(rep["models"]) == {"popular", "sft"}
    assert rep["dropped"] == [{"split": "test", "model": "sft@ranker", "reason": "the SASRec it "
                               "is fused with was retrained since it was evaluated"}]


def test_interrupted_eval_leaves_the_previous_one(sid_run, monkeypatch):
    _sasrec(sid_run)
    _eval(sid_run, "sasrec")
    before = {p.name: p.read_bytes() for p in (sid_run / "eval").iterdir()}

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        ev.run_step(sid_run, EvalConfig(models=("popular",), n_boot=50))
    assert {p.name: p.read_bytes() for p in (sid_run / "eval").iterdir()} == before
    assert not [p for p in sid_run.iterdir() if p.name.startswith(".eval")]


def test_older_one_split_stats_are_read(sid_run):
    _eval(sid_run, "popular")
    stats = _stats(sid_run)
    old = {"split": "test", **stats["splits"]["test"]}
    for m in old["models"].values():
        del m["computed_from"]
    assert ev.stats_splits(old) == {"test": old}
    assert ev.stale_reason(None, _src()).endswith("(an older sgrec)")


def test_unusable_earlier_eval_is_replaced_with_a_note(sid_run):
    _eval(sid_run, "popular")
    (sid_run / "eval" / "popular.test.jsonl").write_text("edited\n")
    rep = _eval(sid_run, "popular", split="valid")
    assert list(_stats(sid_run)["splits"]) == ["valid"]
    assert "earlier eval is unusable" in rep["dropped"][0]["reason"]
