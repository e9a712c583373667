"""`sgrec train --a2po` on a tiny run: every advantage mode from one code path, the per-step log,
the artifact that eval and recommend read, and refusal without a judge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import A2PO_RANK_RECIPE, make_sid_run
from sgrec_cli.cli import app
from sgrec_cli.generator.model import load_generator
from sgrec_cli.rl.a2po import sequence_log_probs

runner = CliRunner()
A2PO = ["train", "--a2po", *A2PO_RANK_RECIPE,
        "--steps", "4", "--batch-users", "4", "--group-size", "8", "--rho",
        "1", "--eval-every", "2", "--valid-users", "0", "--no-progress", "--json", "--device",
        "cpu"]


def _trained(run, judge=True, input_mode="tokens"):
    # SID-token inputs by default: the figures these tests expect were set on them
    steps = [["train", "--epochs", "1", "--valid-users", "0", "--device", "cpu",
              "--input", input_mode, "--no-progress"]]
    if judge:
        steps.append(["judge", "--candidates", "nn", "--num-candidates", "6", "--no-progress"])
    for args in steps:
        res = runner.invoke(app, [*args, "--run", str(run)])
        assert res.exit_code == 0, res.output


def test_a2po_refuses_without_a_judge_and_bad_options(sid_run):
    _trained(sid_run, judge=False)
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run)])
    assert res.exit_code == 2 and "sgrec judge" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--advantage", "ppo"])
    assert res.exit_code == 2 and "--advantage 'ppo' is not known" in res.stderr


@pytest.mark.parametrize("input_mode", ["items", "tokens"])
def test_sequence_log_probs_match_the_beam_scores(sid_run, one_thread, input_mode):
    """The per-token log-probs the update uses sum to the score beam search ranked by."""
    _trained(sid_run, judge=False, input_mode=input_mode)
    from sgrec_cli.generator.beam import constrained_beam_search
    from sgrec_cli.generator.trie import SidTrie

    model, _, vocab = load_generator(sid_run / "sft" / "best")
    codes = np.load(sid_run / "sids" / "sids.npy")
    trie = SidTrie.from_codes(codes, vocab.codebook_sizes)
    ids, mask = vocab.encode_history([[0, 1, 2], [5]], codes, 20, per_item=model.per_item)
    items, scores = constrained_beam_search(model, ids, mask, trie, vocab, 4)
    labels = vocab.target_tokens(items.reshape(-1).numpy(), codes)
    with torch.no_grad():
        hidden = model.encode(ids, mask)
        lp = sequence_log_probs(model, hidden.repeat_interleave(4, 0),
                                mask.repeat_interleave(4, 0), labels, vocab)
    np.testing.assert_allclose(lp.sum(1).numpy(), scores.reshape(-1).numpy(), atol=1e-4)


def _log(folder):
    return [json.loads(line) for line in (folder / "train_log.jsonl").open()]


def test_a2po_all_advantage_modes_train_log_and_evaluate(sid_run):
    """Every advantage mode on the same seeded run (same users, same judge, same options): the
    logs differ exactly where the maths of docs/design.md §7 says the modes differ, so a mode
    that does not reach the advantage computation fails here (the summary naming it is not
    enough)."""
    _trained(sid_run)
    modes = ("a2po", "biz", "reward-sum", "adv-sum")
    B, G = 4, 8  # --batch-users, --group-size of A2PO
    log = {}
    for mode in modes:
        res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--advantage", mode, "--tag",
                                  mode, "--lr", "1e-3"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        assert summary["advantage"] == mode and summary["steps"] == 4
        assert set(summary["time_share"]) == {"rollout", "reward", "update"}
        folder = sid_run / f"a2po-{mode}"
        rows = _log(folder)
        assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
        for r in rows[1:]:
            assert {"hit_fraction", "mean_r_biz", "mean_r_sem", "sign_agreement",
                    "mean_lambda", "kl", "clip_fraction", "loss"} <= set(r)
            assert 0 <= r["hit_fraction"] <= 1
        assert "valid_ndcg@10" in rows[2] and "valid_ndcg@10" in rows[4]
        manifest = json.loads((folder / "manifest.json").read_text())
        # business-only GRPO never reads the judge, so the judge is not one of its inputs
        assert ("judge/manifest.json" in manifest["inputs"]) == (mode != "biz")
        log[mode] = rows
    semantic = ("a2po", "reward-sum", "adv-sum")

    # same seed, same start: the first rollouts (hence business rewards) are the same in every
    # mode; with --rho 1 the judge scores every group except under biz, which never asks it
    first = {m: log[m][1] for m in modes}
    for key in ("hit_fraction", "mean_r_biz", "biz_var_share"):
        assert len({first[m][key] for m in modes}) == 1, (key, first)
    assert len({first[m]["mean_r_sem"] for m in semantic}) == 1, first
    for r in log["biz"][1:]:
        assert r["semantic_share"] == 0 and r["mean_r_sem"] is None, r
    for m in semantic:
        for r in log[m][1:]:
            assert r["semantic_share"] == 1 and r["mean_r_sem"] is not None, (m, r)

    # rollouts with a non-zero advantage: under biz and a2po only the G items of a group with
    # business variance (the gate amplifies A_biz, never creates a direction); under the two
    # sums every judged group's semantic reward gives all its G items one
    # (some step has a group without business variance, else the two counts would agree)
    assert any(r["biz_var_share"] < 1 for r in log["biz"][1:])
    for m in modes:
        for r in log[m][1:]:
            want = B * G * r["biz_var_share"] if m in ("biz", "a2po") else B * G
            assert r["rollouts_with_gradient"] == want, (m, r)

    # the first step with a business signal: no earlier update under biz or a2po (so the same
    # rollouts, ratio 1 and KL 0); the loss is then -mean A over the rollouts with a gradient:
    # 0 for biz (standardised advantages sum to 0 in each group), not 0 for a2po (the gate adds
    # lambda * A_sem only where the signs agree)
    s = next((s for s, r in enumerate(log["biz"]) if r.get("rollouts_with_gradient")), None)
    assert s is not None, "no step with a business signal: nothing to compare"
    biz, a2po = log["biz"][s], log["a2po"][s]
    assert all(log[m][t]["rollouts_with_gradient"] == 0 for m in ("biz", "a2po")
               for t in range(1, s))
    assert biz["hit_fraction"] == a2po["hit_fraction"] > 0 and biz["kl"] == a2po["kl"] == 0
    assert abs(biz["loss"]) < 1e-6, biz
    assert a2po["mean_lambda"] > 0 and abs(a2po["loss"]) > 1e-4, a2po
    # the sums are zero-mean in every group too: their first-step loss is 0
    for m in ("reward-sum", "adv-sum"):
        assert first[m]["kl"] == 0 and abs(first[m]["loss"]) < 1e-6, (m, first[m])

    # every mode updated differently, so the policies moved apart: four different KLs to the
    # SFT reference at the last step where every mode logged one
    last = max(t for t in range(1, 5) if all(log[m][t]["kl"] is not None for m in modes))
    kls = {m: log[m][last]["kl"] for m in modes}
    assert all(kls[m] > 0 for m in modes) and len(set(kls.values())) == 4, (last, kls)

    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sft", "--model",
                              "a2po-a2po", "--model", "a2po-biz", "--n-boot", "100", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert set(report["models"]) == {"sft", "a2po-a2po", "a2po-biz"}
    assert all(m["invalid_rate"] == 0 for m in report["models"].values())
    res = runner.invoke(app, ["recommend", "--run", str(sid_run), "--model", "a2po-biz",
                              "--user", "u1", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", "--run", str(sid_run)])
    assert res.exit_code == 0, res.output
    for name in ("a2po_curves.png", "eval.png"):
        assert (sid_run / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_needs_something_to_plot(sid_run):
    res = runner.invoke(app, ["report", "--run", str(sid_run)])
    assert res.exit_code == 2 and "nothing to plot" in res.stderr


def test_smooth_skips_missing_values():
    from sgrec_cli.report import smooth

    # window 2: [1], [1, None] -> 1, [None, 3] -> 3, [3, 5] -> 4
    np.testing.assert_allclose(smooth([1.0, None, 3.0, 5.0], 2), [1.0, 1.0, 3.0, 4.0])


def _api_cfg(**kw):
    from sgrec_cli.rl.config import A2POConfig

    base = dict(steps=6, batch_users=4, group_size=8, rho=1.0, eval_every=2, valid_users=0,
                device="cpu", lr=1e-3, ppo_epochs=2, rollout="sample", advantage="a2po",
                business="rank", ranker_shape="logprob", ranker_weight=1.0, examples="all")
    return A2POConfig(**{**base, **kw})


def _untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


def test_a2po_resume_equals_an_uninterrupted_run(sid_run):
    """Stop after 3 of 6 steps (mid-way between validations), resume: the same log and the same
    weights as one uninterrupted run; the finished folder of an earlier run stays untouched while
    the interrupted one waits; a changed option refuses to resume."""
    from sgrec_cli.errors import ArtifactError, ConfigError
    from sgrec_cli.rl.step import resume_dir
    from sgrec_cli.rl.step import run_step as run_a2po

    _trained(sid_run)
    full = run_a2po(sid_run, _api_cfg(tag="full"), progress=False)
    assert full["finished"]
    before = (sid_run / "a2po-full" / "manifest.json").read_bytes()

    part = run_a2po(sid_run, _api_cfg(tag="full"), progress=False, stop_after=3)
    assert part == {"finished": False, "step": 3, "checkpoint": str(resume_dir(sid_run,
                                                                               "a2po-full"))}
    assert (sid_run / "a2po-full" / "manifest.json").read_bytes() == before
    shown = CliRunner().invoke(app, ["info", "--run", str(sid_run)]).stdout
    assert "a2po-full  interrupted at step 3 of 6: `sgrec train --a2po --tag full --run" in shown
    with pytest.raises(ConfigError, match=r"options \['lr'\] differ"):
        run_a2po(sid_run, _api_cfg(lr=1e-4, tag="full"), resume=True, progress=False)
    done = run_a2po(sid_run, _api_cfg(tag="full"), resume=True, progress=False)
    assert done["finished"] and done["best"] == full["best"]
    assert not resume_dir(sid_run, "a2po-full").exists()
    first = [json.loads(x) for x in (sid_run / "a2po-full" / "train_log.jsonl").open()]
    assert [r["step"] for r in first] == list(range(7))
    full_run = sid_run / "a2po-again"
    run_a2po(sid_run, _api_cfg(tag="again"), progress=False)
    again = [json.loads(x) for x in (full_run / "train_log.jsonl").open()]
    assert _untimed(first) == _untimed(again)
    a, _, _ = load_generator(sid_run / "a2po-full" / "best")
    b, _, _ = load_generator(full_run / "best")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    # the policy did move (KL > 0 after the first update), so the equalities are not trivial
    assert any(r.get("kl") for r in first[2:])

    # a checkpoint made from another judge is refused
    run_a2po(sid_run, _api_cfg(tag="stale"), progress=False, stop_after=1)
    res = runner.invoke(app, ["judge", "--run", str(sid_run), "--candidates", "nn",
                              "--num-candidates", "5", "--no-progress"])
    assert res.exit_code == 0, res.output
    with pytest.raises(ArtifactError, match="other judge artifacts"):
        run_a2po(sid_run, _api_cfg(tag="stale"), resume=True, progress=False)


def test_a2po_rollout_group_size_and_business_options_take_effect(tmp_path, one_thread):
    """--group-size, --rollout, --temperature and --business change what is trained on, as the
    step logs show: same seed and users in every run, so a difference comes from the option."""
    run = make_sid_run(tmp_path, priced=True)
    _trained(run)
    B, G = 4, 6  # G: neither A2PO's 8 nor the default 16
    runs = {"beam": [], "value": ["--business", "value"],
            "v": ["--rollout", "sample", "--temperature", "1.5", "--business", "value"],
            "t1": ["--rollout", "sample", "--business", "value"]}
    log = {}
    for tag, extra in runs.items():
        res = runner.invoke(app, [*A2PO, "--run", str(run), "--steps", "2", "--group-size",
                                  str(G), "--tag", tag, *extra])
        assert res.exit_code == 0, res.output
        log[tag] = _log(run / f"a2po-{tag}")
        assert [r["step"] for r in log[tag]] == [0, 1, 2]

    # group size: under a2po exactly the G rollouts of each group holding the target carry a
    # gradient (rank and value rewards are 0 in a group without it)
    steps = [r for rows in log.values() for r in rows[1:]]
    assert any(r["hit_fraction"] > 0 for r in steps)
    for r in steps:
        assert r["rollouts_with_gradient"] == G * B * r["hit_fraction"], r

    # rollout and temperature: the first step's groups (scored by the judge) differ
    first = {tag: rows[1] for tag, rows in log.items()}
    assert first["value"]["mean_r_sem"] != first["v"]["mean_r_sem"], "beam = sample groups"
    assert first["v"]["mean_r_sem"] != first["t1"]["mean_r_sem"], "temperature 1.5 = 1 groups"

    # business: beam rollouts are the same under rank and value up to the first update, so the
    # first step with a hit has the same groups but other business rewards
    s = next((s for s, r in enumerate(log["beam"]) if r.get("hit_fraction")), None)
    assert s is not None, "no beam group holds its target: nothing to compare"
    rank, value = log["beam"][s], log["value"][s]
    assert rank["hit_fraction"] == value["hit_fraction"] > 0 and rank["kl"] == value["kl"] == 0
    assert rank["mean_r_sem"] == value["mean_r_sem"]
    assert rank["mean_r_biz"] != value["mean_r_biz"], ("rank = value rewards", rank, value)

    manifest = json.loads((run / "a2po-v" / "manifest.json").read_text())
    assert manifest["config"]["rollout"] == "sample"
    assert manifest["config"]["business"] == "value"
    assert manifest["config"]["group_size"] == G
    res = runner.invoke(app, [*A2PO, "--run", str(run), "--rollout", "greedy"])
    assert res.exit_code == 2 and "--rollout 'greedy' is not known" in res.stderr


def test_value_reward_needs_values(sid_run):
    _trained(sid_run)
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--business", "value"])
    assert res.exit_code == 2 and "no item of this run has one" in res.stderr
    assert not (sid_run / "a2po").exists()
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--business", "future"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (sid_run / "a2po" / "train_log.jsonl").open()]
    assert len(rows) == 5


def test_ranker_reward_needs_sasrec_is_dense_and_ties_the_folder_to_it(sid_run):
    from sgrec_cli.rundir import Run

    _trained(sid_run, judge=False)
    biz = [*A2PO, "--run", str(sid_run), "--advantage", "biz", "--business", "ranker",
           "--steps", "2", "--tag", "ranker"]
    res = runner.invoke(app, biz)
    assert res.exit_code == 2 and "--model sasrec" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (sid_run / "a2po-ranker").exists()
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--hit-weight", "1"])
    assert res.exit_code == 2 and "--hit-weight" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--business", "ranker",
                              "--ranker-shape", "ctr"])
    assert res.exit_code == 2 and "--ranker-shape 'ctr' is not known" in res.stderr

    sasrec = ["train", "--run", str(sid_run), "--model", "sasrec", "--epochs", "1"]
    assert runner.invoke(app, sasrec).exit_code == 0
    res = runner.invoke(app, [*biz, "--ranker-shape", "rank", "--hit-weight", "0.5"])
    assert res.exit_code == 0, res.output
    rows = _log(sid_run / "a2po-ranker")[1:]
    # the ranker orders every group: all carry a business signal, hit or not (the rank reward
    # alone leaves the groups without the next item at 0)
    assert [r["biz_var_share"] for r in rows] == [1.0, 1.0]
    assert all(r["rollouts_with_gradient"] > 0 for r in rows)
    manifest = json.loads((sid_run / "a2po-ranker" / "manifest.json").read_text())
    assert "sasrec/manifest.json" in manifest["inputs"]
    assert manifest["config"]["ranker_shape"] == "rank" and manifest["config"]["hit_weight"] == 0.5
    assert Run(sid_run).breaks("a2po-ranker") == []
    # --examples next: each user's next position has no label, so only the ranker scores it
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--examples", "next"])
    assert res.exit_code == 2 and "--examples next has no label" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--business", "ranker",
                              "--ranker-weight", "0.5"])
    assert res.exit_code == 2 and "--ranker-weight mixes the teacher" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--business", "ranker",
                              "--ranker-candidates", "4"])
    assert res.exit_code == 2 and "--ranker-candidates adds the teacher's items" in res.stderr
    res = runner.invoke(app, [*biz[:-1], "next", "--examples", "next", "--ranker-shape",
                              "distill", "--ranker-weight", "0.7", "--ranker-candidates", "4"])
    assert res.exit_code == 0, res.output
    rows = _log(sid_run / "a2po-next")[1:]
    assert [r["hit_fraction"] for r in rows] == [0.0, 0.0]  # no target to hit
    assert [r["biz_var_share"] for r in rows] == [1.0, 1.0]
    assert all(r["rollouts_with_gradient"] > 0 for r in rows)
    assert json.loads((sid_run / "a2po-next" / "manifest.json").read_text()
                      )["config"]["ranker_candidates"] == 4
    # a retrained ranker leaves the A2PO folder tied to the old one: `sgrec info` says so
    assert runner.invoke(app, [*sasrec[:-1], "2"]).exit_code == 0
    assert any("sasrec" in p for p in Run(sid_run).breaks("a2po-ranker"))


def test_the_default_is_the_fused_sasrec_teacher_at_each_users_next_position(sid_run):
    """`train --a2po` without recipe options: business-only, the run's SASRec fused with the
    SFT generator at the weight `eval --model sft@ranker` chooses on validation as the teacher
    of each user's next position. It needs no judge, is refused in one line without SASRec,
    and a resumed run chooses the same weight and ends as an uninterrupted one."""
    from sgrec_cli.rl.config import A2POConfig
    from sgrec_cli.rl.step import run_step as run_a2po

    _trained(sid_run, judge=False)
    small = ["train", "--a2po", "--run", str(sid_run), "--steps", "2", "--batch-users", "4",
             "--group-size", "8", "--eval-every", "1", "--valid-users", "0", "--device", "cpu",
             "--no-progress", "--json"]
    res = runner.invoke(app, small)
    assert res.exit_code == 2 and "--model sasrec" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (sid_run / "a2po").exists()
    sasrec = ["train", "--run", str(sid_run), "--model", "sasrec", "--epochs", "1"]
    assert runner.invoke(app, sasrec).exit_code == 0
    res = runner.invoke(app, small)
    assert res.exit_code == 0, res.output
    cfg = json.loads((sid_run / "a2po" / "manifest.json").read_text())["config"]
    assert (cfg["advantage"], cfg["business"], cfg["ranker_shape"], cfg["examples"]) == (
        "biz", "ranker", "distill", "next")
    res = runner.invoke(app, ["eval", "--run", str(sid_run), "--model", "sft@ranker", "--split",
                              "valid", "--n-boot", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert cfg["ranker_weight"] == json.loads(res.stdout)["models"]["sft@ranker"]["ranker_weight"]
    rows = _log(sid_run / "a2po")[1:]
    assert [r["hit_fraction"] for r in rows] == [0.0, 0.0]  # the next position has no label
    assert [r["biz_var_share"] for r in rows] == [1.0, 1.0]

    api = dict(steps=4, batch_users=4, group_size=8, eval_every=2, valid_users=0,
               device="cpu", lr=1e-2, select_alpha=1.0)
    full = run_a2po(sid_run, A2POConfig(tag="d", **api), progress=False)
    assert run_a2po(sid_run, A2POConfig(tag="d2", **api), progress=False,
                    stop_after=2)["step"] == 2
    done = run_a2po(sid_run, A2POConfig(tag="d2", **api), resume=True, progress=False)
    assert done["finished"] and done["best"] == full["best"]
    assert _untimed(_log(sid_run / "a2po-d2")) == _untimed(_log(sid_run / "a2po-d"))
    assert any(r.get("kl") for r in _log(sid_run / "a2po-d")[1:])  # the policy moved


def test_ranker_reward_resume_is_bit_identical_and_a_retrained_ranker_is_refused(sid_run):
    """A ranker-reward run stopped after 3 of 6 steps and resumed ends with the log and the
    weights of one uninterrupted run; a SASRec retrained meanwhile refuses the resume."""
    from sgrec_cli.errors import ArtifactError
    from sgrec_cli.rl.step import run_step as run_a2po

    _trained(sid_run, judge=False)
    sasrec = ["train", "--run", str(sid_run), "--model", "sasrec", "--epochs", "1"]
    assert runner.invoke(app, sasrec).exit_code == 0
    ranker = dict(advantage="biz", business="ranker")
    full = run_a2po(sid_run, _api_cfg(tag="rk", **ranker), progress=False)
    first = _log(sid_run / "a2po-rk")
    assert run_a2po(sid_run, _api_cfg(tag="rk", **ranker), progress=False,
                    stop_after=3)["step"] == 3
    done = run_a2po(sid_run, _api_cfg(tag="rk", **ranker), resume=True, progress=False)
    assert done["finished"] and done["best"] == full["best"]
    assert _untimed(_log(sid_run / "a2po-rk")) == _untimed(first)
    run_a2po(sid_run, _api_cfg(tag="rk2", **ranker), progress=False)
    a, _, _ = load_generator(sid_run / "a2po-rk" / "best")
    b, _, _ = load_generator(sid_run / "a2po-rk2" / "best")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert any(r.get("kl") for r in first[2:])  # the policy moved: the equalities say something

    run_a2po(sid_run, _api_cfg(tag="rk", **ranker), progress=False, stop_after=1)
    assert runner.invoke(app, [*sasrec[:-1], "2"]).exit_code == 0
    with pytest.raises(ArtifactError, match="other sasrec artifacts"):
        run_a2po(sid_run, _api_cfg(tag="rk", **ranker), resume=True, progress=False)


def test_item_values_fill_missing_with_the_median():
    from sgrec_cli.errors import ConfigError
    from sgrec_cli.rl.step import item_values

    got = item_values([{"value": 2.0}, {"value": None}, {}, {"value": 10.0}, {"value": 4.0}])
    np.testing.assert_allclose(got, [2.0, 4.0, 4.0, 10.0, 4.0])
    with pytest.raises(ConfigError, match="no item"):
        item_values([{"value": None}])
    with pytest.raises(ConfigError, match=">= 0"):
        item_values([{"value": -1.0}])


def test_business_rewards_dispatch():
    from sgrec_cli.rl.a2po import business_rewards

    items = np.array([[3, 5, 7], [1, 2, -1]])
    targets = np.array([5, 9])
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [1, 1], [0, 1], [1, 0], [0, 0],
                      [1, 0]])
    w = 1 / np.log2(np.arange(3) + 2)
    rank = business_rewards("rank", items, targets, codes)
    np.testing.assert_allclose(rank[0], [-w[0] / w.sum(), 1.0, -w[2] / w.sum()])
    np.testing.assert_allclose(rank[1], 0.0)  # no hit
    values = np.arange(10, dtype=float)
    np.testing.assert_allclose(business_rewards("value", items, targets, codes, values)[0],
                               [-3 * w[0] / w.sum(), 5.0, -7 * w[2] / w.sum()])
    # prefix: target 5 = (1, 1); item 3 = (1, 1) -> 1, 5 -> 1, 7 = (1, 0) -> 0.5
    np.testing.assert_allclose(business_rewards("prefix", items, targets, codes)[0],
                               [1.0, 1.0, 0.5])
    # ranker, rank shape: the ranker orders group 0 as 3, 5, 7 -> 1, 0.5, 0; group 1's third
    # slot holds no item, so its two items get 1 and 0 whatever the score there
    scores = np.array([[-1.0, -2.0, -3.0], [-1.0, -2.0, -0.1]])
    ranker = business_rewards("ranker", items, targets, codes, ranker_log_probs=scores,
                              ranker_shape="rank")
    np.testing.assert_allclose(ranker, [[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]])
    # --hit-weight 2 adds twice the rank reward (group 1 has no hit: nothing added)
    mixed = business_rewards("ranker", items, targets, codes, ranker_log_probs=scores,
                             ranker_shape="rank", hit_weight=2.0)
    np.testing.assert_allclose(mixed, ranker + 2 * rank)
    with pytest.raises(ValueError, match="log-probabilities"):
        business_rewards("ranker", items, targets, codes)


def test_later_training_items_never_read_valid_or_test():
    from sgrec_cli.data.split import split_all
    from sgrec_cli.rl.a2po import business_rewards, later_training_items

    # user 0: 1 2 3 2 4 | 5 (valid) 6 (test); user 1: 7 8 9 | 1 2
    seqs = [[1, 2, 3, 2, 4, 5, 6], [7, 8, 9, 1, 2]]
    train, _, _ = split_all(seqs, 20)
    later = later_training_items(train, seqs)
    # user 0 examples predict 2, 3, 2, 4; user 1 predicts 8, 9
    assert [e.target for e in train] == [2, 3, 2, 4, 8, 9]
    assert later == [{3: 1, 4: 3}, {2: 1, 4: 2}, {4: 1}, {}, {9: 1}, {}]
    # the first example (target 2): group [4, 9, 2] -> 4 at distance 3 gets 1/log2(5),
    # 9 (wrong, rank 1) -1/log2(3) / W, 2 (the next item) 1; W = 1 + 1/log2(3) + 1/2
    w = 1 / np.log2(np.arange(3) + 2)
    r = business_rewards("future", np.array([[4, 9, 2]]), np.array([2]), np.zeros((10, 1)),
                         later=later[:1])
    np.testing.assert_allclose(r, [[1 / np.log2(5), -w[1] / w.sum(), 1.0]])


def test_a2po_resume_from_a_torn_checkpoint_is_one_error_line(sid_run):
    from sgrec_cli.rl.step import resume_dir
    from sgrec_cli.rl.step import run_step as run_a2po

    _trained(sid_run)
    run_a2po(sid_run, _api_cfg(tag="torn"), progress=False, stop_after=1)
    (resume_dir(sid_run, "a2po-torn") / "optimizer.safetensors").write_bytes(b"garbage")
    args = ["--steps", "6", "--rollout", "sample", "--ppo-epochs", "2", "--lr", "1e-3"]
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--tag", "torn", "--resume", *args])
    assert res.exit_code == 2 and "unusable checkpoint" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 3  # the log line, the error (folded)
    assert not (sid_run / "a2po-torn").exists()


def test_a2po_checks_each_artifact_once(sid_run, monkeypatch):
    """One `train --a2po` opens data/, sids/, sft/ and judge/ through one rundir.Run: every file
    of theirs is hashed once (it used to re-hash data/ three times and judge/ twice)."""
    import collections

    from sgrec_cli import artifacts

    _trained(sid_run)
    hashed = collections.Counter()
    real = artifacts.sha256_file

    def counting(path):
        hashed[str(path)] += 1
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_file", counting)
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--tag", "once"])
    assert res.exit_code == 0, res.output
    inputs = {p: n for p, n in hashed.items()
              if any(f"/{step}/" in p for step in ("data", "sids", "sft", "judge"))}
    assert {p.split("/run/")[1].split("/")[0] for p in inputs} == {"data", "sids", "sft", "judge"}
    assert max(inputs.values()) == 1, sorted(p for p, n in inputs.items() if n > 1)
