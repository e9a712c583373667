"""Collaborative item vectors for the tokenizer (build-sids --collab-dim)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from conftest import make_sid_run
from sgrec_cli.cli import app
from sgrec_cli.rundir import Run
from sgrec_cli.sids.collab import collaborative_vectors, cooccurrence_counts, ppmi, table_vectors


def test_counts_use_the_training_part_only():
    # the last two items of each sequence (validation, test) are never read
    counts = cooccurrence_counts([[0, 1, 2, 3, 4], [1, 2, 5, 6]], 7, window=1)
    assert counts == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 2.0, (2, 1): 2.0}
    assert not {k for k in counts if 3 in k or 4 in k or 5 in k or 6 in k}


def test_ppmi_golden():
    # counts (0,1)=2, (1,2)=1 both ways: row sums 2, 3, 1; total 6
    m = ppmi({(0, 1): 2.0, (1, 0): 2.0, (1, 2): 1.0, (2, 1): 1.0}, 3).to_dense()
    expect = np.log(2 * 6 / (2 * 3)), np.log(1 * 6 / (3 * 1))
    np.testing.assert_allclose([m[0, 1], m[1, 2]], expect, rtol=1e-6)
    assert m[0, 2] == 0 and m[0, 0] == 0


def test_vectors_group_items_bought_together():
    rng = np.random.default_rng(0)
    # two communities of items: 0-9 and 10-19; users stay within one
    seqs = [list(rng.choice(10, 6, replace=False) + 10 * (u % 2)) for u in range(200)]
    v = collaborative_vectors(seqs, 21, 4, seed=0)
    assert v.shape == (21, 4) and not v[20].any()  # item 20: never seen, zero vector
    np.testing.assert_allclose(np.linalg.norm(v[:20], axis=1), 1.0, rtol=1e-5)
    sim = v[:20] @ v[:20].T
    within = (sim[:10, :10].sum() - 10) / 90
    across = sim[:10, 10:].mean()
    assert within > across + 0.3
    np.testing.assert_array_equal(v, collaborative_vectors(seqs, 21, 4, seed=0))


def test_build_sids_with_collab(tmp_path, one_thread):
    run = make_sid_run(tmp_path)
    res = CliRunner().invoke(app, ["build-sids", "--run", str(run), "--method", "rqkmeans",
                                   "--codebook-size", "8", "--dedup", "suffix", "--collab-dim",
                                   "4", "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert res.exit_code == 0, res.output
    text = np.load(run / "sids" / "embeddings.npy")
    collab = np.load(run / "sids" / "collab.npy")
    assert collab.shape == (text.shape[0], 4) and text.shape[1] == 384
    cfg = json.loads((run / "sids" / "manifest.json").read_text())["config"]
    assert cfg["collab_dim"] == 4 and cfg["collab_weight"] == 1.0
    res = CliRunner().invoke(app, ["build-sids", "--run", str(run), "--collab-weight", "0"])
    assert res.exit_code == 2 and "collab" in res.stderr


def test_table_vectors_golden():
    # centred rows (3,0), (1,0), (-1,0), (-3,0): one principal direction; mean |projection| 2
    table = np.array([[3.0, 1.0], [1.0, 1.0], [-1.0, 1.0], [-3.0, 1.0]])
    v = table_vectors(table, 3)
    assert v.shape == (4, 3) and v.dtype == np.float32
    np.testing.assert_allclose(v[:, 0] * np.sign(v[0, 0]), [1.5, 0.5, -0.5, -1.5], rtol=1e-6)
    np.testing.assert_allclose(v[:, 1:], 0.0, atol=1e-6)  # no second direction, no third column
    np.testing.assert_allclose(np.abs(table_vectors(table, 1)[:, 0]), [1.5, 0.5, 0.5, 1.5],
                               rtol=1e-6)


def test_build_sids_from_the_sasrec_table(tmp_path, one_thread):
    run = make_sid_run(tmp_path)
    args = ["build-sids", "--run", str(run), "--method", "rqkmeans", "--codebook-size", "8",
            "--dedup", "suffix", "--collab-dim", "4", "--collab-source", "sasrec",
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    before = (run / "sids" / "sids.npy").read_bytes()
    res = CliRunner().invoke(app, args)  # no SASRec yet: one error, the old SIDs untouched
    assert res.exit_code != 0 and "sgrec train --model sasrec" in res.stderr
    assert (run / "sids" / "sids.npy").read_bytes() == before
    res = CliRunner().invoke(app, ["train", "--run", str(run), "--model", "sasrec", "--epochs",
                                   "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    collab = np.load(run / "sids" / "collab.npy")
    assert collab.shape == (40, 4)
    np.testing.assert_allclose(np.linalg.norm(collab, axis=1).mean(), 1.0, rtol=1e-5)
    manifest = json.loads((run / "sids" / "manifest.json").read_text())
    assert manifest["config"]["collab_source"] == "sasrec"
    assert "sasrec/manifest.json" in manifest["inputs"]
    res = CliRunner().invoke(app, ["build-sids", "--run", str(run), "--collab-source", "sasrec",
                                   "--collab-dim", "0"])
    assert res.exit_code == 2 and "--collab-dim" in res.stderr
    assert Run(run).breaks("sids") == []
    res = CliRunner().invoke(app, ["train", "--run", str(run), "--model", "sasrec", "--epochs",
                                   "1", "--seed", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert any("sasrec" in p for p in Run(run).breaks("sids"))  # retrained: the SIDs are stale
