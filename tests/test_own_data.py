"""A newcomer's own data: small catalogues get a working quantizer without options (the codebook
size from the catalogue size, a budget in optimisation steps), and degenerate data is said at
`prepare` and refused in one line by the step that cannot run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sgrec_cli.cli import app
from sgrec_cli.sids.config import BuildSidsConfig
from sgrec_cli.sids.rqvae import pass_batch
from sgrec_cli.sids.step import auto_codebook_size, resolve_codebook, sid_hints

runner = CliRunner()


@pytest.mark.parametrize(("items", "k"), [
    (2, 2), (3, 3), (5, 4), (64, 4), (65, 8), (199, 16), (200, 16), (256, 16), (257, 32),
    (1000, 64), (2048, 128), (4096, 256), (4344, 256), (12_101, 256), (10**6, 256)])
def test_codebook_size_follows_the_catalogue(items, k):
    """The power of two at or above items/16, between 4 (or the item count) and 256:
    64 items -> 4 (64 <= 4*16); 65 -> 8; 200 -> 16 (8*16 = 128 < 200 <= 16*16 = 256); every
    catalogue of 4,096 items or more keeps 256, the default the results were measured with."""
    assert auto_codebook_size(items) == k


@pytest.mark.parametrize(("items", "batch", "used"), [
    (200, 512, 25), (199, 512, 25), (4344, 512, 512), (12_101, 512, 512), (5, 512, 1),
    (64, 4, 4)])
def test_a_pass_over_the_catalogue_is_at_least_eight_steps(items, batch, used):
    """ceil(items / 8) caps the batch: 200 items -> 25 (8 steps a pass, where 512 gave 1)."""
    assert pass_batch(items, batch) == used


def test_a_given_codebook_larger_than_the_catalogue_is_one_line_with_the_fix():
    from sgrec_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="exceeds the 200 items.*leave it out"):
        resolve_codebook(BuildSidsConfig(codebook_size=256), 200, None)
    said = []
    cfg = resolve_codebook(BuildSidsConfig(), 200, said.append)
    assert cfg.codebook_size == 16 and "codebook size 16 per level for 200 items" in said[0]
    assert resolve_codebook(BuildSidsConfig(), 5000, said.append).codebook_size == 256
    assert len(said) == 1  # the default is not announced


def test_poor_sids_get_a_hint_and_good_ones_none():
    good = {"codebook_size": 16, "raw_collision_rate": 0.2,
            "level_usage": [{"level": lvl, "used": 16} for lvl in (1, 2, 3)]}
    assert sid_hints(good) == []
    poor = {"codebook_size": 16, "raw_collision_rate": 0.98,
            "level_usage": [{"level": 1, "used": 16}, {"level": 2, "used": 3},
                            {"level": 3, "used": 1}]}
    one, two = sid_hints(poor)
    assert "98% of items share their raw SID" in one
    assert "level 2, 3 uses fewer than half of its 16 codes" in two and "(e.g. 8)" in two


def _csv(folder: Path, sequences: dict[str, list[str]], titles: bool = True) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        for user, items in sequences.items():
            for t, item in enumerate(items):
                w.writerow([user, item, t])
    items = sorted({i for s in sequences.values() for i in s})
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        w.writerows([i, f"thing {i}" if titles else ""] for i in items)
    return folder


def test_one_user_is_a_warning_at_prepare(tmp_path):
    src = _csv(tmp_path / "one", {"u": ["a", "b", "c", "d", "e"]})
    res = runner.invoke(app, ["prepare", str(src), "--run", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "warning: only 1 user: validation and test metrics" in res.stderr


def test_no_training_examples_warns_then_each_training_step_refuses(tmp_path):
    src = _csv(tmp_path / "short", {f"u{n}": [f"i{n}", f"i{n + 1}", f"i{n + 2}"]
                                    for n in range(30)})
    run = tmp_path / "r"
    res = runner.invoke(app, ["prepare", str(src), "--run", str(run)])
    assert res.exit_code == 0 and "warning: no training examples" in res.stderr
    res = runner.invoke(app, ["train", "--run", str(run), "--model", "sasrec"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "`sgrec train --model sasrec` needs training examples" in lines[0]


def test_items_without_text_are_said_at_build_sids(tmp_path):
    src = _csv(tmp_path / "bare", {f"u{n}": [f"i{(n + t) % 12}" for t in range(5)]
                                   for n in range(12)}, titles=False)
    run = tmp_path / "r"
    assert runner.invoke(app, ["prepare", str(src), "--run", str(run)]).exit_code == 0
    res = runner.invoke(app, ["build-sids", "--run", str(run), "--method", "rqkmeans",
                              "--no-progress", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "warning: only 1 distinct item text among 12 items" in " ".join(res.stderr.split())
