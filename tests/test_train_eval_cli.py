"""`sgrec train` / `sgrec eval` through the CLI on a tiny run: every model, the table, per-user
files, bootstrap comparisons, and refusal of models trained on other data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from conftest import toy_items, write_letter
from sgrec_cli.cli import app

runner = CliRunner()


def test_train_and_eval_all_models(sid_run):
    for args in (["--model", "generator", "--epochs", "2", "--valid-users", "0",
                  "--device", "cpu"],
                 ["--model", "sasrec", "--epochs", "2"]):
        res = runner.invoke(app, ["train", "--run", str(sid_run), "--json", *args])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sft", "--model",
                              "sasrec", "--model", "popular", "--n-boot", "200", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["users"] == 31 and set(report["models"]) == {"sft", "sasrec", "popular"}
    for m in report["models"].values():
        assert 0 <= m["ndcg@10"] <= m["recall@10"] <= m["recall@20"] <= 1
        assert m["invalid_rate"] == 0 and m["duplicate_rate"] == 0
    assert len(report["comparisons"]) == 6  # 3 pairs x 2 metrics
    rows = [json.loads(line) for line in (sid_run / "eval" / "sft.test.jsonl").open()]
    assert len(rows) == 31 and all(len(set(r["top20"])) == 20 for r in rows)
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "popular"])
    assert res.exit_code == 0 and "popular" in res.stdout and "N@10" in res.stdout


def test_eval_refuses_missing_and_stale_models(sid_run, tmp_path):
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sft"])
    assert res.exit_code == 2 and "run `sgrec train` first" in res.stderr
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "bert4rec"])
    assert res.exit_code == 2 and "'bert4rec' is not known" in res.stderr
    res = runner.invoke(app, ["train", "--run", str(sid_run), "--model", "sasrec", "--epochs",
                              "1"])
    assert res.exit_code == 0, res.output
    # another dataset prepared into the run after training: SASRec was trained on other data
    other = write_letter(tmp_path / "other", {"a": [0, 1, 2, 3], "b": [3, 2, 1, 0]},
                         toy_items(4), name="Other")
    res = runner.invoke(app, ["prepare", str(other), "--run", str(sid_run), "--force"])
    assert res.exit_code == 0, res.output
    assert "Other ->" in res.stdout and "interactions" in res.stdout  # the stats table
    # the run's data/ now holds the new dataset (not only the printed table says so)
    res = runner.invoke(app, ["info", "--run", str(sid_run), "--json"])
    assert res.exit_code == 0, res.output
    data = next(s for s in json.loads(res.stdout)["steps"] if s["step"] == "data")
    assert data["status"] == "ok" and data["dataset"]["name"] == "Other"
    assert (data["stats"]["users"], data["stats"]["items"]) == (2, 4)
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sasrec"])
    assert res.exit_code == 2 and "built from another data/ folder" in res.stderr
    assert "run `sgrec train --model sasrec` again" in res.stderr
