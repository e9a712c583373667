"""`sgrec recommend`: histories, known users and files of users -> top-K items with titles and
SIDs; history exclusion; clear errors for unknown items and malformed files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sgrec_cli.cli import app
from sgrec_cli.generator.decode import drop_seen

runner = CliRunner()


def test_drop_seen_golden():
    items = np.array([[5, 2, 9, 7, -1], [1, 2, 3, 4, 5]])
    scores = np.array([[-1.0, -2.0, -3.0, -4.0, -np.inf], [-1.0, -2.0, -3.0, -4.0, -5.0]])
    top, top_s = drop_seen(items, scores, [(2, 7), (9,)], k=3)
    # row 0: 2 and 7 were seen -> 5, 9 and then only the empty slot is left
    assert top.tolist() == [[5, 9, -1], [1, 2, 3]]
    assert top_s[0, :2].tolist() == [-1.0, -3.0] and np.isneginf(top_s[0, 2])
    assert top_s[1].tolist() == [-1.0, -2.0, -3.0]


def recommend(run, *args):
    return runner.invoke(app, ["recommend", "--run", str(run), *args])


def test_recommend_history_user_and_file(trained_run, tmp_path):
    run = trained_run
    users = tmp_path / "users.jsonl"
    users.write_text('{"user": "alice", "history": ["3", "4", 5]}\n\n7,8\n', encoding="utf-8")
    out_file = tmp_path / "recs.jsonl"
    res = recommend(run, "--history", "1,2,3", "--user", "u0", "--users", str(users), "--k", "5",
                    "--json", "--out", str(out_file))
    assert res.exit_code == 0, res.output
    recs = json.loads(res.stdout)
    assert [r["user"] for r in recs] == [None, "u0", "alice", None]
    assert [r["history"] for r in recs] == [3, 7, 3, 2]
    sids = json.loads((run / "sids" / "sids.json").read_text())["items"]
    for r, hist in zip(recs, [{"1", "2", "3"}, None, {"3", "4", "5"}, {"7", "8"}], strict=True):
        ids = [x["id"] for x in r["items"]]
        assert len(ids) == 5 and len(set(ids)) == 5  # k distinct items
        assert [x["rank"] for x in r["items"]] == [1, 2, 3, 4, 5]
        scores = [x["score"] for x in r["items"]]
        assert scores == sorted(scores, reverse=True)
        if hist:
            assert not hist & set(ids)  # history items excluded by default
        for x in r["items"]:
            assert x["title"] == f"item {x['id']}" and x["sid"] == sids[x["id"]]["sid"]
    assert [json.loads(line) for line in out_file.open()] == recs
    # the table view names the user and the items' titles
    res = recommend(run, "--user", "u1", "--k", "3")
    assert res.exit_code == 0 and "u1" in res.stdout and "item " in res.stdout


def test_recommend_other_models_and_no_exclusion(trained_run):
    for model in ("sasrec", "popular"):
        res = recommend(trained_run, "--history", "1,2", "--model", model, "--k", "4", "--json")
        assert res.exit_code == 0, res.output
        ids = [x["id"] for x in json.loads(res.stdout)[0]["items"]]
        assert len(ids) == 4 and not {"1", "2"} & set(ids)
    res = recommend(trained_run, "--history", "1,2", "--model", "popular", "--k", "40",
                    "--no-exclude-history", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)[0]["items"]) == 40  # the whole catalogue, history too


@pytest.mark.parametrize("args, message", [
    (["--history", "1,999"], "item '999' is not in the catalogue"),
    (["--history", "1,,2"], "must be item ids separated by commas"),
    (["--user", "nobody"], "user 'nobody' is not in the dataset"),
    ([], "nothing to recommend for"),
    (["--history", "1", "--k", "0"], "--k 0 must be an integer >= 1"),
    (["--history", "1", "--model", "bert4rec"], "'bert4rec' is not known"),
])
def test_recommend_bad_input(trained_run, args, message):
    res = recommend(trained_run, *args)
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_recommend_bad_file(trained_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"history": ["1"]}\n{"history": []}\n', encoding="utf-8")
    res = recommend(trained_run, "--users", str(bad))
    assert res.exit_code == 2 and "bad.jsonl:2" in res.stderr and '"history"' in res.stderr
    bad.write_text("{not json\n", encoding="utf-8")
    res = recommend(trained_run, "--users", str(bad))
    assert res.exit_code == 2 and "bad.jsonl:1: not valid JSON" in res.stderr
    res = recommend(trained_run, "--users", str(tmp_path / "absent.jsonl"))
    assert res.exit_code == 2 and "absent.jsonl: missing required file" in res.stderr


def test_recommend_needs_a_trained_model(sid_run):
    res = recommend(sid_run, "--history", "1,2")
    assert res.exit_code == 2 and "sgrec train" in res.stderr
