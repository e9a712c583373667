"""`sgrec prepare --max-history N` is the one setting of the history length: every later step
(generator SFT, SASRec, eval, recommend) reads it from RUN/data's manifest."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from conftest import toy_items, write_letter
from sgrec_cli.cli import app
from sgrec_cli.generator.decode import predict_topk
from sgrec_cli.generator.store import load_generator_step
from sgrec_cli.rundir import Run

runner = CliRunner()


def _cli(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_prepare_max_history_reaches_train_eval_and_recommend(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    # 12 users with 60 interactions over 80 items: histories far longer than the default 20
    inter = {f"u{u}": [int(i) for i in rng.choice(80, size=60, replace=False)]
             for u in range(12)}
    src = write_letter(tmp_path / "src", inter, toy_items(80))
    run = tmp_path / "run"
    _cli("prepare", str(src), "--run", str(run), "--max-history", "50")
    _cli("build-sids", "--run", str(run), "--method", "rqkmeans", "--codebook-size", "8",
         "--dedup", "suffix", "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    summary = json.loads(_cli("train", "--run", str(run), "--epochs", "1", "--d-model", "32",
                              "--num-layers", "1", "--valid-users", "4", "--no-progress",
                              "--json"))
    assert summary["max_history"] == 50
    manifest = json.loads((run / "sft" / "manifest.json").read_text())
    assert manifest["max_history"] == 50

    sasrec = json.loads(_cli("train", "--run", str(run), "--model", "sasrec", "--epochs", "1",
                             "--json"))
    assert sasrec["max_history"] == 50
    assert json.loads((run / "sasrec" / "config.json").read_text())["max_len"] == 50

    gen = load_generator_step(Run(run), "sft")
    assert gen.max_history == 50
    # what `sgrec recommend` returns is the model reading the last 50 items, not the last 20
    user = "u0"
    history = [int(i) for i in inter[user]]
    ids = [json.loads(line)["id"] for line in (run / "data" / "items.jsonl").read_text()
           .splitlines()]
    index = [ids.index(str(i)) for i in history]
    rec = json.loads(_cli("recommend", "--run", str(run), "--user", user, "--k", "10",
                          "--no-exclude-history", "--decode", "beam", "--json"))
    got = [ids.index(r["id"]) for r in rec[0]["items"]]

    def top(keep: int) -> list[int]:
        out = predict_topk(gen.model, gen.vocab, gen.trie, [index], gen.codes, 10, 20,
                           max_history=keep)
        return out[0].tolist()

    assert got == top(50)
    assert top(50) != top(20)  # the setting matters for this model: the check can fail
    _cli("eval", "--run", str(run), "--model", "sft", "--n-boot", "20")
    stats = json.loads((run / "eval" / "stats.json").read_text())
    assert "sft" in stats["splits"]["test"]["models"]
