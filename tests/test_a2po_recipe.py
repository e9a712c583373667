"""The `train --a2po` recipe options: chunked gradient accumulation, the NLL anchor, the
positive-only filter, the latest-example pool and the paired selection of the kept state.
Each test checks that an option changes what it claims to change, and nothing else."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import A2PO_RANK_RECIPE
from sgrec_cli.cli import app
from sgrec_cli.config import A2POConfig
from sgrec_cli.data.split import Example
from sgrec_cli.generator.model import load_generator
from sgrec_cli.generator.trie import SidTrie
from sgrec_cli.rl.a2po import Policy, PolicyScorer, a2po_step, rollout_groups
from sgrec_cli.rl.advantages import positive_part, sibling_advantages, standardise
from sgrec_cli.rl.step import select, training_pool

runner = CliRunner()
A2PO = ["train", "--a2po", *A2PO_RANK_RECIPE,
        "--steps", "4", "--batch-users", "4", "--group-size", "8",
        "--advantage", "biz", "--eval-every", "2", "--valid-users", "0", "--no-progress",
        "--json", "--device", "cpu"]


def _sft(run, judge=True):
    steps = [["train", "--epochs", "1", "--valid-users", "0", "--device", "cpu",
              # SID-token inputs and 4 + 4 layers: the figures these tests expect were set on
              # them
              "--input", "tokens", "--num-layers", "4", "--no-progress"]]
    if judge:
        steps.append(["judge", "--candidates", "nn", "--num-candidates", "6", "--no-progress"])
    for args in steps:
        res = runner.invoke(app, [*args, "--run", str(run)])
        assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------- pure functions


def test_training_pool_all_and_latest():
    train = [Example(u, [0] * t, t) for u, n in ((0, 3), (1, 1), (2, 2)) for t in range(1, n + 1)]
    assert training_pool(train, "all").tolist() == [0, 1, 2, 3, 4, 5]
    assert training_pool(train, "latest").tolist() == [2, 3, 5]
    with pytest.raises(ValueError):
        training_pool(train, "first")


def test_next_positions_read_the_training_items_only():
    from sgrec_cli.rl.step import next_positions

    # user 0: 1 2 3 4 | 5 (valid) 6 (test); user 1: 7 | 8 9; user 2: too short to have one
    got = next_positions([[1, 2, 3, 4, 5, 6], [7, 8, 9], [3, 4]], max_history=3)
    assert got == [Example(0, (2, 3, 4), -1), Example(1, (7,), -1)]
    assert training_pool(got, "next").tolist() == [0, 1]


def test_positive_part_golden():
    adv = np.array([[1.5, -0.5, 0.0], [-2.0, 0.25, -0.0]])
    np.testing.assert_array_equal(positive_part(adv), [[1.5, 0, 0], [0, 0.25, 0]])


def test_sibling_advantages_golden():
    """Group of 4 with SIDs (0,0) (0,1) (1,0) (1,1), reward 1 for the first: level 0 compares
    all four (mean 1/4, std sqrt(3)/4), level 1 the pairs under the same first code; a
    padding rollout (5th) gets 0 and is no one's sibling."""
    r = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])
    codes = np.array([[[0, 0], [0, 1], [1, 0], [1, 1], [0, 0]]])
    valid = np.array([[True, True, True, True, False]])
    a = sibling_advantages(r, codes, valid, eps=1e-12)
    s = np.sqrt(3) / 4
    np.testing.assert_allclose(a[0, :, 0], [0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s, 0])
    np.testing.assert_allclose(a[0, :, 1], [1, -1, 0, 0, 0])
    # level 0 is the sequence-level group advantage
    np.testing.assert_allclose(a[0, :4, 0], standardise(r[:, :4], eps=1e-12)[0])


def test_select_keeps_the_best_state_only_when_significant():
    rng = np.random.default_rng(0)
    start = rng.random(400) * 0.2
    better = start + 0.02  # every user gains: p < 1e-4
    sel = select(start, better, best_step=50, alpha=0.05)
    assert sel["kept_step"] == 50 and sel["p_value"] < 0.05
    assert sel["valid_diff"] == pytest.approx(0.02)
    noisy = start.copy()
    noisy[:3] += 0.01  # a gain on 3 of 400 users: not significant
    sel = select(start, noisy, best_step=50, alpha=0.05)
    assert sel["kept_step"] == 0 and sel["p_value"] >= 0.05
    assert select(start, noisy, best_step=50, alpha=1.0)["kept_step"] == 50  # alpha 1: best
    assert select(start, start, best_step=0, alpha=1.0)["kept_step"] == 0  # the start was best


# -------------------------------------------------------------------- the update, exactly


class _Capture(torch.optim.Optimizer):
    """Records the gradients of each step instead of moving the weights, so that several
    updates are computed from one and the same policy."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[dict[int, torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append({id(q): q.grad.clone() for g in self.param_groups
                           for q in g["params"] if q.grad is not None})


def _policy(run):
    model, _, vocab = load_generator(run / "sft" / "best")
    codes = np.load(run / "sids" / "sids.npy")
    params = [q for q in model.parameters() if q.requires_grad]
    p = Policy(model, PolicyScorer(model, vocab), copy.deepcopy(model).requires_grad_(False),
               _Capture(params), vocab, SidTrie.from_codes(codes, vocab.codebook_sizes), codes,
               20)
    return p, params


def _grads(p, params, batch, **opts):
    cfg = A2POConfig(**{"advantage": "biz", "business": "rank", "examples": "all",
                        "group_size": 8, "batch_users": len(batch), **opts})
    p.optimizer.grads.clear()
    log = a2po_step(p, batch, cfg=cfg, judged=np.zeros(len(batch), bool))
    return [p.optimizer.grads[-1].get(id(q), torch.zeros_like(q)) for q in params], log


def test_chunks_nll_anchor_and_positive_filter_change_the_gradient_as_documented(
        sid_run, monkeypatch):
    """One policy, gradients captured before any move (grad-norm clipping off, so gradients
    add linearly):
    - chunked = unchunked gradient, with and without the anchor;
    - anchor w: gradient(w) - gradient(0) = w * gradient of the mean target-SID NLL;
    - positive only: exactly one rollout per hit group (the target, under the rank reward)
      carries a gradient, and the gradient differs from the full update."""
    from sgrec_cli.rl.a2po import sequence_log_probs

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)
    _sft(sid_run)
    p, params = _policy(sid_run)
    histories = [[0, 1, 2], [5, 9], [3, 4, 7, 8], [11], [20, 21, 22], [30, 31]]
    ids, mask = p.vocab.encode_history(histories, p.codes, 20)
    cfg = A2POConfig(group_size=8)
    beams, _ = rollout_groups(p.model, ids, mask, p.trie, p.vocab, cfg)
    # targets inside the groups (rank 2 or the first), so every group has a business signal
    targets = [int(row[2]) if i % 2 else int(row[0]) for i, row in enumerate(beams)]
    batch = [(u, h, t) for u, (h, t) in enumerate(zip(histories, targets, strict=True))]

    whole, log = _grads(p, params, batch)
    assert log["hit_fraction"] == 1.0 and log["rollouts_with_gradient"] == 8 * len(batch)
    parts, _ = _grads(p, params, batch, chunk_users=4)
    ones, _ = _grads(p, params, batch, chunk_users=1)
    for a, b, c in zip(whole, parts, ones, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(c, a, atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in whole)

    w = 0.7
    anchored, log = _grads(p, params, batch, nll_weight=w)
    anchored_chunks, _ = _grads(p, params, batch, nll_weight=w, chunk_users=4)
    p.model.zero_grad(set_to_none=True)
    labels = p.vocab.target_tokens(np.asarray(targets), p.codes)
    nll = -sequence_log_probs(p.model, p.model.encode(ids, mask), mask, labels, p.vocab).mean()
    nll.backward()
    assert log["nll"] == pytest.approx(float(nll.detach()), rel=1e-5)
    for q, a, b, c in zip(params, whole, anchored, anchored_chunks, strict=True):
        expect = a + w * (q.grad if q.grad is not None else torch.zeros_like(q))
        torch.testing.assert_close(b, expect, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(c, expect, atol=1e-6, rtol=1e-5)

    pos, log = _grads(p, params, batch, positive_only=True)
    assert log["rollouts_with_gradient"] == len(batch)  # the target alone is above its group
    assert any(not torch.allclose(a, b) for a, b in zip(whole, pos, strict=True))

    # sibling advantages: per-token, so another gradient, the same under chunking
    sib, log = _grads(p, params, batch, sibling=True)
    sib_parts, _ = _grads(p, params, batch, sibling=True, chunk_users=4)
    assert log["rollouts_with_gradient"] == 8 * len(batch)
    assert any(not torch.allclose(a, b) for a, b in zip(whole, sib, strict=True))
    for a, b in zip(sib, sib_parts, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


def test_extra_candidates_golden():
    from sgrec_cli.rl.a2po import extra_candidates

    groups = np.array([[4, 2, 7], [1, -1, -1]])
    ranked = np.array([[2, 9, 4, 5, 8], [1, 3, -1, -1, -1]])
    # row 0: 2 and 4 are in the group -> 9, 5; row 1: 1 is in it -> 3, then nothing left
    assert extra_candidates(groups, ranked, 2).tolist() == [[9, 5], [3, -1]]
    assert extra_candidates(groups, ranked, 0).shape == (2, 0)


@pytest.mark.parametrize("extra,weight", [(0, 1.0), (3, 1.0), (0, 0.6), (3, 0.6)])
def test_distill_update_is_the_cross_entropy_gradient_and_learns_the_rankers_group_order(
        sid_run, monkeypatch, extra, weight):
    """--ranker-shape distill: the step's policy gradient equals the gradient of the cross-
    entropy from the ranker's softmax over each group to the policy's (sum over the groups, a
    mean over the rollouts' SID tokens as every surrogate is; the KL term is 0 at the start),
    also when --ranker-candidates adds the ranker's best items the policy did not propose, and
    with a fused teacher (--ranker-weight < 1, whose reference scores the KL term reuses); and
    a few real optimiser steps on one batch lower that cross-entropy."""
    from sgrec_cli.rl.a2po import _ref_item_log_probs, extra_candidates, sequence_log_probs

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)
    _sft(sid_run, judge=False)
    p, params = _policy(sid_run)
    histories = [[0, 1, 2], [5, 9], [3, 4, 7, 8], [11]]
    batch = [(u, h, 0) for u, h in enumerate(histories)]
    n_items = len(p.codes)

    def ranker(hists, items):  # a ranker that prefers higher item ids, whatever the history
        return np.where(items >= 0, -0.2 * (n_items - np.maximum(items, 0)), np.nan)

    def ranker_top(hists, k):  # its best items, history excluded
        return np.array([[i for i in range(n_items - 1, -1, -1) if i not in h][:k]
                         for h in hists])

    cfg = dict(business="ranker", ranker_shape="distill", ranker_candidates=extra,
               ranker_weight=weight)
    ids, mask = p.vocab.encode_history(histories, p.codes, 20)
    items, lp_items = rollout_groups(p.model, ids, mask, p.trie, p.vocab,
                                     A2POConfig(group_size=8))
    assert (items >= 0).all()
    # the reference's item log-probabilities (a teacher with --ranker-weight < 1) are the
    # policy's beam scores while the policy is still the reference
    lp_ref, ref_tokens = _ref_item_log_probs(p, A2POConfig(chunk_users=3), ids, mask, items)
    np.testing.assert_allclose(lp_ref, lp_items, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ref_tokens.sum(1).view(items.shape).numpy(), lp_ref, rtol=1e-6)
    if extra:
        added = extra_candidates(items, ranker_top(histories, 8 + extra), extra)
        assert (added >= 0).all() and not np.isin(added, items).any()
        items = np.concatenate([items, added], axis=1)
    G = items.shape[1]
    with torch.no_grad():  # the teacher's reference part: the frozen SFT model's scores
        ref = sequence_log_probs(p.ref, p.ref.encode(ids, mask).repeat_interleave(G, 0),
                                 mask.repeat_interleave(G, 0),
                                 p.vocab.target_tokens(items.reshape(-1), p.codes),
                                 p.vocab).sum(1).view(len(batch), G).double()
    q = torch.softmax(weight * torch.as_tensor(ranker(histories, items)) + (1 - weight) * ref,
                      dim=1)  # (B, G)
    labels = p.vocab.target_tokens(items.reshape(-1), p.codes)

    def cross_entropy():
        lp = sequence_log_probs(p.model, p.model.encode(ids, mask).repeat_interleave(G, 0),
                                mask.repeat_interleave(G, 0), labels, p.vocab)  # (B*G, L)
        log_pi = torch.log_softmax(lp.sum(1).view(len(batch), G).double(), dim=1)
        return -(q * log_pi).sum(), lp.shape[1]

    p.optimizer.grads.clear()
    log = a2po_step(p, batch, cfg=A2POConfig(advantage="biz", group_size=8, batch_users=4,
                                             **cfg),
                    judged=np.zeros(4, bool), ranker=ranker, ranker_top=ranker_top)
    got = [p.optimizer.grads[-1].get(id(w), torch.zeros_like(w)) for w in params]
    n_rows = log["rollouts_with_gradient"]
    ce, L = cross_entropy()
    want = torch.autograd.grad(ce / (n_rows * L), params, allow_unused=True)
    assert n_rows == 4 * G and log["biz_var_share"] == 1.0
    for g, w in zip(got, want, strict=True):
        w = torch.zeros_like(g) if w is None else w.to(g.dtype)
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-7)
    assert any(g.abs().max() > 0 for g in got)

    if weight < 1:
        # the fused teacher starts close to the policy: its small gradient is checked above,
        # while Adam's first steps (about lr per weight, whatever the gradient's size) would
        # measure the optimiser, not the teacher
        return
    # real steps: the policy's order of these groups moves towards the ranker's
    p.optimizer = torch.optim.AdamW(params, lr=1e-3)
    with torch.no_grad():
        before = float(cross_entropy()[0])
    for _ in range(5):
        a2po_step(p, batch, cfg=A2POConfig(advantage="biz", group_size=8, batch_users=4,
                                           lr=1e-3, **cfg),
                  judged=np.zeros(4, bool), ranker=ranker, ranker_top=ranker_top)
    with torch.no_grad():
        after = float(cross_entropy()[0])
    assert after < before - 0.1, (before, after)


# ------------------------------------------------------------------------------ the CLI


def test_latest_pool_refuses_a_batch_larger_than_it_and_biz_needs_no_judge(sid_run):
    _sft(sid_run, judge=False)
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--steps", "2", "--examples",
                              "latest", "--batch-users", "31"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["semantic"] == "none (business only)"
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--advantage", "a2po"])
    assert res.exit_code == 2 and "sgrec judge" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--examples", "latest",
                              "--batch-users", "32"])  # 31 users: 31 latest examples
    assert res.exit_code == 2
    assert "--batch-users 32 is more than the 31 training examples" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--examples", "first"])
    assert res.exit_code == 2 and "--examples 'first' is not known" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--nll-weight", "-1"])
    assert res.exit_code == 2 and "--nll-weight" in res.stderr
    res = runner.invoke(app, [*A2PO, "--run", str(sid_run), "--advantage", "a2po",
                              "--sibling"])
    assert res.exit_code == 2 and "use it with --advantage biz" in res.stderr


def test_the_kept_state_is_the_sft_start_unless_the_best_is_significant(sid_run):
    """Same run twice: with the default alpha a best step that is not significantly better on
    validation is dropped for the SFT weights; with alpha 1 the best step is kept. The anchor
    and the latest pool go through the whole command."""
    _sft(sid_run)
    common = [*A2PO, "--run", str(sid_run), "--lr", "1e-2", "--examples", "latest",
              "--nll-weight", "0.5", "--positive-only", "--chunk-users", "2"]
    res = runner.invoke(app, [*common, "--tag", "strict"])
    assert res.exit_code == 0, res.output
    strict = json.loads(res.stdout)
    res = runner.invoke(app, [*common, "--tag", "any", "--select-alpha", "1"])
    assert res.exit_code == 0, res.output
    loose = json.loads(res.stdout)
    assert strict["best"] == loose["best"]  # the same training, only the choice differs
    sft, _, _ = load_generator(sid_run / "sft" / "best")
    kept, _, _ = load_generator(sid_run / "a2po-strict" / "best")
    best, _, _ = load_generator(sid_run / "a2po-any" / "best")
    same_as_sft = all(torch.equal(a, b) for a, b in
                      zip(sft.state_dict().values(), kept.state_dict().values(), strict=True))
    sel = strict["selection"]
    # seeded: step 4 is the best on validation, +0.010 over the start on 31 users, p ~ 0.85
    assert sel["best_step"] == 4 and sel["valid_diff"] > 0 and sel["p_value"] >= 0.05
    assert sel["kept_step"] == 0 and same_as_sft
    assert loose["selection"]["kept_step"] == 4
    assert any(not torch.equal(a, b) for a, b in
               zip(sft.state_dict().values(), best.state_dict().values(), strict=True))
    rows = [json.loads(x) for x in (sid_run / "a2po-strict" / "train_log.jsonl").open()][1:]
    assert all(r["nll"] > 0 for r in rows)
    manifest = json.loads((sid_run / "a2po-strict" / "manifest.json").read_text())
    assert manifest["config"]["examples"] == "latest"
    assert manifest["config"]["nll_weight"] == 0.5 and manifest["config"]["positive_only"]
