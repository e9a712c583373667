"""`sgrec build-sids`: quantizers, determinism, artifacts and refusals (real MiniLM, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_letter
from sgrec_cli.artifacts import load_manifest
from sgrec_cli.cli import app
from sgrec_cli.config import BuildSidsConfig, PrepareConfig
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.errors import ArtifactError, ConfigError
from sgrec_cli.rundir import load_sids
from sgrec_cli.sids.kmeans import kmeans
from sgrec_cli.sids.rqkmeans import residual_kmeans
from sgrec_cli.sids.step import run_step as build_sids

runner = CliRunner()
ADJ = ["red", "steel", "glass", "nitrile", "digital", "brass", "rubber", "plastic"]
NOUN = ["beaker", "screw", "glove", "caliper", "valve", "hose", "funnel", "pipette"]


def catalog(n: int = 64) -> dict:
    return {str(i): {"title": f"{ADJ[i % 8]} {NOUN[(i // 8) % 8]} size {i % 5}",
                     "brand": f"brand{i % 4}", "description": "",
                     "categories": f"Lab,{NOUN[(i // 8) % 8]}"} for i in range(n)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embcache")


@pytest.fixture
def tiny_run(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    inter = {f"u{u}": [int(i) for i in rng.choice(64, size=6, replace=False)]
             for u in range(40)}
    inter["u_all"] = list(range(64))  # every item occurs
    src = write_letter(tmp_path / "src", inter, catalog())
    run = tmp_path / "run"
    prepare(run, PrepareConfig(source=str(src)))
    return run


def small_cfg(cache_dir: Path, **kw) -> BuildSidsConfig:
    base = dict(levels=3, codebook_size=16, steps=80, batch_size=32, eval_every=10, patience=4,
                hidden=(64, 32), latent_dim=16, cache_dir=str(cache_dir), device="cpu")
    base.update(kw)
    return BuildSidsConfig(**base)


def test_kmeans_objective_decreases_and_codes_in_range():
    x = np.random.default_rng(1).normal(size=(500, 16)).astype(np.float32)
    res = kmeans(x, 10, seed=3, niter=15)
    assert all(b <= a + 1e-3 for a, b in zip(res.objective, res.objective[1:], strict=False))
    assert res.objective[-1] < res.objective[0]
    assert res.assign.min() >= 0 and res.assign.max() < 10 and res.centroids.shape == (10, 16)
    again = kmeans(x, 10, seed=3, niter=15)
    assert np.array_equal(res.assign, again.assign)  # same seed, same clusters


def test_residual_levels_quantise_what_the_levels_before_left():
    """Each level is k-means of the residual the levels before it left: the reconstruction is
    the sum of each level's chosen centroid, every item's code at a level is its nearest
    centroid to that residual, the last level's input is the residual of the first L-1 levels,
    and so the error falls level by level. (Quantising x itself at every level would pass a
    bare "the error falls" check at one level and fail every one of these.)"""
    x = np.random.default_rng(2).normal(size=(400, 8)).astype(np.float32)
    rq = residual_kmeans(x, 3, 16, seed=0)
    chosen = [book[rq.codes[:, level]] for level, book in enumerate(rq.codebooks)]
    np.testing.assert_allclose(rq.reconstruction, sum(chosen), atol=1e-5)
    residual = x.copy()
    errors = []
    for level, book in enumerate(rq.codebooks):
        if level == len(rq.codebooks) - 1:
            np.testing.assert_allclose(rq.last_residual_in, residual, atol=1e-5)
        dist = ((residual[:, None, :] - book[None]) ** 2).sum(-1)  # (N, K)
        assert (rq.codes[:, level] == dist.argmin(1)).mean() > 0.99  # k-means' last assignment
        residual = residual - chosen[level]
        errors.append(float((residual ** 2).sum()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] == pytest.approx(float(((x - rq.reconstruction) ** 2).sum()), rel=1e-4)


def test_kmeans_refuses_more_codes_than_points():
    with pytest.raises(ConfigError, match="codebook size 20 is larger"):
        kmeans(np.zeros((5, 2), np.float32), 20, seed=0)


@pytest.mark.parametrize("method,dedup", [("rqvae", "reassign"), ("rqkmeans", "suffix")])
def test_build_writes_unique_sids(tiny_run, cache_dir, method, dedup):
    stats = build_sids(tiny_run, small_cfg(cache_dir, method=method, dedup=dedup),
                       progress=False)
    sids = load_sids(tiny_run)
    assert sids.codes.shape == (64, 3 if dedup == "reassign" else 4)
    assert len({tuple(r) for r in sids.codes}) == 64 and stats["final_collisions"] == 0
    assert (sids.codes[:, :3] < 16).all() and (sids.codes >= 0).all()
    assert sids.embeddings().shape == (64, 384)
    table = json.loads((tiny_run / "sids" / "sids.json").read_text())
    assert table["items"]["5"]["sid"] == [int(c) for c in sids.codes[5]]
    assert table["items"]["5"]["title"] == "brass beaker size 0"
    for key in ("raw_collision_rate", "level_usage", "relative_reconstruction_error",
                "semantic_coherence_level1_leaf_category"):
        assert key in stats
    assert stats["semantic_coherence_level1_leaf_category"]["lift"] > 1
    m = load_manifest(tiny_run, "sids").data
    assert m["seed"] == 0 and m["config"]["method"] == method
    assert set(m["outputs"]) >= {"embeddings.npy", "sids.npy", "sids.json",
                                 "quantizer.safetensors", "stats.json"}
    if dedup == "suffix":
        assert stats["items_moved_by_dedup"] == 0


def assert_sid_files_consistent(run: Path, cache_dir: Path) -> None:
    """RUN/sids as later steps and readers see it, checked against RUN/data/items.jsonl (one
    item per line, in index order): sids.json maps every item id to its title and to the row
    of sids.npy at the item's index; the SIDs are unique and each code lies within its level's
    codebook; embeddings.npy holds one unit-norm row per item, the matrix the embedding step
    computed (and cached under --cache-dir) in item order."""
    folder = run / "sids"
    items = [json.loads(line) for line in (run / "data" / "items.jsonl").open()]
    ids = [it["id"] for it in items]
    n = len(items)
    codes = np.load(folder / "sids.npy")
    table = json.loads((folder / "sids.json").read_text())
    assert codes.dtype == np.int64 and codes.shape == (n, table["levels"])
    sizes = np.asarray(table["codebook_sizes"])
    assert sizes.shape == (table["levels"],)
    assert len(table["items"]) == n and set(table["items"]) == set(ids)
    for i, item in enumerate(items):
        entry = table["items"][item["id"]]
        assert entry == {"sid": codes[i].tolist(), "title": item["title"]}, (i, entry)
    assert len({tuple(row) for row in codes}) == n
    assert (codes >= 0).all() and (codes < sizes).all()

    emb = np.load(folder / "embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (n, 384) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(emb, axis=0)) == n  # every item's text differs
    cached = [np.load(p) for p in cache_dir.glob("*.npy")]
    assert any(c.shape == emb.shape and np.array_equal(c, emb) for c in cached), \
        "embeddings.npy is not the embedded catalogue in item order"


def test_same_seed_byte_identical_other_seed_differs(tiny_run, cache_dir, tmp_path):
    files = ("sids.json", "sids.npy", "embeddings.npy")
    tables = []
    for seed in (7, 7, 8):
        build_sids(tiny_run, small_cfg(cache_dir, seed=seed), progress=False)
        assert_sid_files_consistent(tiny_run, cache_dir)
        tables.append(tuple((tiny_run / "sids" / f).read_bytes() for f in files))
    assert tables[0] == tables[1]
    assert tables[0][0] != tables[2][0]
    assert tables[0][2] == tables[2][2]  # the seed drives the quantiser, not the embedder


def test_refuses_corrupted_and_missing_data(tiny_run, cache_dir, tmp_path):
    res = runner.invoke(app, ["build-sids", "--run", str(tmp_path / "empty"), "--no-progress"])
    assert res.exit_code == 2 and "run `sgrec prepare SOURCE` first" in res.stderr
    (tiny_run / "data" / "items.jsonl").write_text('{"index": 0}\n')
    res = runner.invoke(app, ["build-sids", "--run", str(tiny_run), "--no-progress",
                              "--cache-dir", str(cache_dir)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {tiny_run / 'data' / 'items.jsonl'}: content does not match its manifest "
        "(edited or corrupted); re-run the step"]
    assert not (tiny_run / "sids").exists()


def test_sids_from_another_dataset_are_refused(tiny_run, cache_dir, tmp_path):
    build_sids(tiny_run, small_cfg(cache_dir, method="rqkmeans"), progress=False)
    other = write_letter(tmp_path / "other", {"a": [0, 1, 2, 3], "b": [3, 2, 1, 0]},
                         catalog(4), name="Other")
    prepare(tiny_run, PrepareConfig(source=str(other)), force=True)
    with pytest.raises(ArtifactError, match="different dataset"):
        load_sids(tiny_run)


def test_bad_options_one_line(tiny_run):
    res = runner.invoke(app, ["build-sids", "--run", str(tiny_run), "--method", "vq"])
    assert res.exit_code == 2 and "--method 'vq' is not known" in res.stderr
    res = runner.invoke(app, ["build-sids", "--run", str(tiny_run), "--template", "{name}",
                              "--no-progress"])
    assert res.exit_code == 2 and "name" in res.stderr and len(res.stderr.splitlines()) == 1
    res = runner.invoke(app, ["build-sids", "--run", str(tiny_run), "--codebook-size", "100",
                              "--no-progress", "--method", "rqkmeans"])
    assert res.exit_code == 2 and "exceeds the 64 items" in res.stderr


def test_cli_json_and_info(tiny_run, cache_dir):
    res = runner.invoke(app, ["build-sids", "--run", str(tiny_run), "--method", "rqkmeans",
                              "--codebook-size", "8", "--dedup", "suffix", "--cache-dir",
                              str(cache_dir), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["final_collisions"] == 0
    res = runner.invoke(app, ["info", "--run", str(tiny_run)])
    assert "sids  ok" in res.stdout and "final collisions: 0" in res.stdout


@pytest.mark.slow
def test_scientific_rqvae_end_to_end(scientific, tmp_path):
    """Real data: titles only (to keep the CPU embedding short in CI), a reduced step budget."""
    run = tmp_path / "sci"
    prepare(run, PrepareConfig(source=str(scientific)))
    stats = build_sids(run, BuildSidsConfig(template="{title}", steps=540, cache_dir=str(tmp_path),
                                       device="cpu"), progress=False)
    assert stats["items"] == 4344 and stats["final_collisions"] == 0
    assert stats["level_usage"][0]["used"] >= 0.9 * 256
    assert stats["raw_collision_rate"] < 0.3
    assert stats["semantic_coherence_level1_leaf_category"]["lift"] > 10
