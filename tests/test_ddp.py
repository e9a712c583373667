"""`sgrec train` under torchrun: two CPU processes with the gloo backend train one generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import A2PO_RANK_RECIPE
from sgrec_cli.generator.model import load_generator


@pytest.mark.slow
def test_sft_two_processes_gloo(sid_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "sgrec_cli.cli", "train", "-r", str(sid_run), "--epochs", "2",
           "--batch-size", "8", "--valid-users", "0", "--device", "cpu", "--json"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)  # one report: only rank 0 prints
    assert summary["processes"] == 2 and summary["epochs_run"] == 2
    out = sid_run / "sft"
    rows = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    assert [r["epoch"] for r in rows] == [1, 2]  # written once, not once per process
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == "sft"
    model, _, vocab = load_generator(out / "best")
    assert vocab.num_levels == 4  # 3 k-means levels + the suffix level of the toy run


@pytest.mark.slow
def test_a2po_two_processes_gloo_match_one(sid_run):
    """`train --a2po` under torchrun: two gloo processes, each with half of every step's groups
    and half of the validation users, reach the weights one process reaches (the loss of each
    process is scaled by its share of the rollouts, so DDP's average is the full gradient)."""
    from typer.testing import CliRunner

    from sgrec_cli.cli import app

    runner = CliRunner()
    # the prefix objective at 4 + 4 layers: one epoch of it gives this toy run a start whose
    # rollouts hit their targets (a gradient to compare), as the test was built around
    for args in (["train", "--epochs", "1", "--valid-users", "0", "--device", "cpu",
                  "--objective", "prefix", "--num-layers", "4"],
                 ["judge", "--candidates", "nn", "--num-candidates", "6"]):
        res = runner.invoke(app, [*args, "--run", str(sid_run), "--no-progress"])
        assert res.exit_code == 0, res.output
    a2po = ["train", "-r", str(sid_run), "--a2po", *A2PO_RANK_RECIPE,
            "--steps", "4", "--batch-users", "4",
            "--group-size", "8", "--rho", "1", "--eval-every", "2", "--valid-users", "0",
            "--lr", "1e-3", "--ppo-epochs", "2", "--select-alpha", "1", "--chunk-users", "1",
            "--device", "cpu",
            "--no-progress", "--json"]
    # alpha 1: the best state, not the start, is compared; chunks of one group: the gradient
    # accumulates over chunks (DDP syncing at the last) and a chunk without a gradient-
    # carrying rollout still runs its (zero-weighted) backward in step with the other process
    res = runner.invoke(app, [*a2po, "--tag", "one"])
    assert res.exit_code == 0, res.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "sgrec_cli.cli", *a2po, "--tag", "two"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)  # one report: only rank 0 prints
    assert summary["processes"] == 2 and summary["finished"]
    one = [json.loads(x) for x in (sid_run / "a2po-one" / "train_log.jsonl").open()]
    two = [json.loads(x) for x in (sid_run / "a2po-two" / "train_log.jsonl").open()]
    assert [r["step"] for r in two] == [0, 1, 2, 3, 4]  # written once, not once per process
    for r1, r2 in zip(one, two, strict=True):
        for key in ("valid_ndcg@10", "hit_fraction", "rollouts_with_gradient", "mean_r_biz"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], abs=1e-6), (r1["step"], key)
    one_w = load_generator(sid_run / "a2po-one" / "best")[0].state_dict()
    two_w = load_generator(sid_run / "a2po-two" / "best")[0].state_dict()
    sft_w = load_generator(sid_run / "sft" / "best")[0].state_dict()

    def dist(x, y):
        return sum(float(((x[k] - y[k]) ** 2).sum()) for k in x) ** 0.5

    moved = dist(one_w, sft_w)
    assert moved > 0.1  # A2PO did change the weights...
    # ...and two processes changed them the same way, up to float summation order (Adam
    # turns ~1e-9 gradient differences on near-zero entries into lr-sized steps, so not 1e-6)
    assert dist(two_w, one_w) < 1e-3 * moved
