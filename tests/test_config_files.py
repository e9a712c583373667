"""Options declared once: `--config FILE` (TOML) on every step, command-line options over the
file, one-line errors with the file and line, `sgrec info --config STEP` round trips, and
`train` refusing every option of a mode other than the chosen one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sgrec_cli import cli
from sgrec_cli.cli import app

runner = CliRunner()
SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"


def sgrec(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# ---- train: each mode refuses the options of the others -------------------------------------

MODE_FLAGS = {"generator": [], "sasrec": ["--model", "sasrec"], "a2po": ["--a2po"]}
VALUE = {int: "3", float: "0.5", str: "x"}


def _foreign_options():
    """(option flag, a value, the mode that does not take it, the modes that do)."""
    cases = []
    for by_mode in cli.TRAIN.owners().values():
        d = next(iter(by_mode.values()))
        if not d.cli:
            continue
        for mode in cli.TRAIN.modes:
            if mode not in by_mode:
                args = [d.flag] if d.type is bool else [d.flag, VALUE[d.type]]
                cases.append(pytest.param(args, mode, sorted(by_mode), id=f"{d.flag}-{mode}"))
    cases.append(pytest.param(["--resume"], "sasrec", ["a2po", "generator"], id="--resume-sasrec"))
    return cases


FOREIGN = _foreign_options()


@pytest.mark.parametrize(("args", "mode", "owners"), FOREIGN)
def test_train_refuses_an_option_of_another_mode(tmp_path, args, mode, owners):
    """Before anything runs (the run folder does not even exist), one line naming the option,
    the chosen mode and the one(s) that take it."""
    res = sgrec("train", "--run", tmp_path / "none", *MODE_FLAGS[mode], *args)
    line = one_error_line(res)
    label = cli.TRAIN.modes[mode].label
    assert f"error: {args[0]} is not an option of `sgrec {label}`; it belongs to " in line
    for owner in owners:
        assert f"`sgrec {cli.TRAIN.modes[owner].label}`" in line
    assert not (tmp_path / "none").exists()


def test_every_single_mode_option_is_covered():
    """The refusal is tested for every option that some mode does not take (dozens), so a new
    mode-specific option is covered by being declared."""
    assert len(FOREIGN) > 60
    assert {a[0] for a, _, _ in (p.values for p in FOREIGN)} >= {
        "--d-model", "--hidden", "--group-size", "--epochs", "--tag", "--warmup-steps"}


def test_model_sasrec_with_a2po_is_refused(tmp_path):
    line = one_error_line(sgrec("train", "--run", tmp_path, "--model", "sasrec", "--a2po"))
    assert "--a2po fine-tunes the generator" in line


# ---- config files ------------------------------------------------------------------------------


def _prepare(run: Path, *args: str):
    return sgrec("prepare", SHOP, "--run", run, *args)


def test_file_values_apply_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "prepare.toml"
    cfg.write_text('# my shop\nmax-history = 5\nmin_seq_len = 6\nname = "from-file"\n')
    res = _prepare(tmp_path / "r", "--config", cfg, "--max-history", "7", "--json")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "r" / "data" / "manifest.json").read_text())
    assert manifest["config"]["max_history"] == 7  # the option over the file
    assert manifest["config"]["min_seq_len"] == 6  # the file over the default
    assert manifest["dataset"]["name"] == "from-file"


def test_the_file_may_name_the_source(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'source = "{SHOP}"\n')
    res = sgrec("prepare", "--run", tmp_path / "r", "--config", cfg)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(("text", "expect"), [
    ("max_history = 5\nmax_histroy = 6\n", ":2: unknown key 'max_histroy' for sgrec prepare; "
     "did you mean max_history"),
    ("\n\nmax_history = \"five\"\n", ":3: max_history 'five' must be an integer"),
    ("max_history = 0\n", ":1: --max-history 0 must be an integer >= 1"),
    ("max_history = true\n", ":1: max_history True must be an integer"),
    ("[model]\nd_model = 3\n", ":1: [model] is a table"),
    ("max_history = \n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_with_its_file_and_line(tmp_path, text, expect):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    line = one_error_line(_prepare(tmp_path / "r", "--config", cfg))
    assert f"{cfg}{expect}" in line or (expect.startswith("not") and expect in line), line
    assert not (tmp_path / "r").exists()  # nothing written


def test_a_missing_file_is_one_line(tmp_path):
    line = one_error_line(_prepare(tmp_path / "r", "--config", tmp_path / "nope.toml"))
    assert "nope.toml: cannot read the config file" in line


def test_a_file_option_of_another_mode_names_its_line(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('model = "sasrec"\nd_model = 64\n')
    line = one_error_line(sgrec("train", "--run", tmp_path, "--config", cfg))
    assert f"{cfg}:2: --d-model is not an option of `sgrec train --model sasrec`" in line


# ---- info --config: a finished step printed as the file that reproduces it -------------------

# each step with options away from their defaults (toy sizes), in workflow order
STEPS = [
    ("data", ["prepare", "SRC", "--max-history", "6", "--name", "toy-rt"]),
    ("sids", ["build-sids", "--method", "rqkmeans", "--codebook-size", "8", "--dedup", "suffix",
              "--collab-dim", "0", "--kmeans-iters", "5", "--no-progress"]),
    ("sft", ["train", "--epochs", "1", "--d-model", "32", "--num-layers", "1", "--num-heads",
             "2", "--batch-size", "64", "--device", "cpu", "--no-progress"]),
    ("sasrec", ["train", "--model", "sasrec", "--epochs", "1", "--hidden", "16"]),
    ("judge", ["judge", "--candidates", "nn", "--num-candidates", "5", "--steps", "20",
               "--no-progress"]),
    ("a2po-rt", ["train", "--a2po", "--advantage", "biz", "--steps", "2", "--batch-users", "4",
                 "--group-size", "4", "--eval-every", "2", "--tag", "rt", "--device", "cpu",
                 "--no-progress"]),
    ("eval", ["eval", "--model", "sft", "--model", "popular", "--split", "valid", "--n-boot",
              "50"]),
    ("report", ["report", "--window", "5"]),
]


def test_each_step_rerun_from_its_printed_config_has_the_same_config(tmp_path, one_thread):
    """Build a run with non-default options; then build a second run from nothing but the
    files `sgrec info --config STEP` prints: every step's manifest config is the same."""
    from conftest import make_sid_run

    src = make_sid_run(tmp_path / "toy").parent / "src"
    first, second = tmp_path / "first", tmp_path / "second"
    for step, args in STEPS:
        res = sgrec(*[str(src) if a == "SRC" else a for a in args], "--run", first)
        assert res.exit_code == 0, f"{step}: {res.output}"
    for step, args in STEPS:
        printed = sgrec("info", "--run", first, "--config", step)
        assert printed.exit_code == 0, printed.output
        assert printed.stdout.startswith(f"# sgrec {args[0]} --run RUN --config THIS_FILE")
        (tmp_path / f"{step}.toml").write_text(printed.stdout)
        extra = ["--no-progress"] if "--no-progress" in args else []
        res = sgrec(args[0], "--run", second, "--config", tmp_path / f"{step}.toml", *extra)
        assert res.exit_code == 0, f"{step}: {res.output}"
        config = [json.loads((run / step / "manifest.json").read_text())["config"]
                  for run in (first, second)]
        assert config[0] == config[1], step


def test_info_config_of_an_unknown_or_missing_step(tmp_path):
    assert "no step of that name" in one_error_line(sgrec("info", "--run", tmp_path, "--config",
                                                          "nope"))
    line = one_error_line(sgrec("info", "--run", tmp_path, "--config", "sft"))
    assert "no 'sft' step here; run `sgrec train` first" in line


def test_a_mode_selector_of_the_wrong_type_in_a_file(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('a2po = "yes"\n')
    line = one_error_line(sgrec("train", "--run", tmp_path, "--config", cfg))
    assert f"{cfg}:1: a2po 'yes' must be bool" in line
