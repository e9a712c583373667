"""`sgrec train` under torchrun: two CPU processes with the gloo backend train one generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
