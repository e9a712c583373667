"""`sgrec prepare` on the real datasets and on tiny fixtures, through the CLI and the API."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sgrec_cli import cli
from sgrec_cli.artifacts import load_manifest
from sgrec_cli.cli import app
from sgrec_cli.config import PrepareConfig
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.options import describe
from sgrec_cli.rundir import load_data

runner = CliRunner()


def _prepare_json(source, run, *extra):
    res = runner.invoke(app, ["prepare", str(source), "--run", str(run), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_scientific_counts(scientific, tmp_path):
    stats = _prepare_json(scientific, tmp_path / "sci")["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (8317, 4344, 58492)
    assert stats["split"]["train_examples"] == 33541  # SOURCE.md: 41,858 - 8,317
    assert stats["items_with"]["title"] == 1.0
    items = load_data(tmp_path / "sci").items()
    assert items[0]["id"] == "0" and items[0]["brand"] == "Sealed Unit Parts Co., Inc."
    assert items[0]["categories"][:2] == ["Industrial & Scientific", "Industrial Electrical"]


def test_beauty_counts(beauty, tmp_path):
    out = _prepare_json(beauty, tmp_path / "beauty")
    stats = out["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    assert stats["split"]["train_examples"] == 131413  # SOURCE.md
    items = {it["id"]: it for it in load_data(tmp_path / "beauty").items()}
    assert items["B000GFCRGO"]["title"] == "sedu ionic ceramic tourmaline flat"
    assert items["B001LTVF7G"]["title"] == ""  # the one item with an empty text


def test_toy_letter_indices_and_drops(toy_letter, tmp_path):
    res = prepare(tmp_path, PrepareConfig(source=str(toy_letter)))
    assert res.stats["users"] == 5 and res.stats["dropped"] == {
        "users_shorter_than_min_seq_len": 1}
    data = load_data(tmp_path)
    assert [it["id"] for it in data.items()] == [str(i) for i in range(8)]
    assert data.sequences()[2] == [5, 6, 7, 0]
    # u0 = 0 1 2 3 4 -> train (0->1) (0 1->2); u1 = 2 3 5 -> no train example
    assert [(e.user, e.history, e.target) for e in data.split("train")][:2] == [
        (0, (0,), 1), (0, (0, 1), 2)]
    assert res.stats["split"]["train_examples"] == 2 + 0 + 1 + 4 + 0


def test_rerun_same_dataset_is_unchanged_and_manifest_complete(toy_letter, tmp_path):
    prepare(tmp_path, PrepareConfig(source=str(toy_letter)))
    first = (tmp_path / "data" / "train.jsonl").read_bytes()
    res = prepare(tmp_path, PrepareConfig(source=str(toy_letter)))
    assert res.unchanged and (tmp_path / "data" / "train.jsonl").read_bytes() == first
    m = load_manifest(tmp_path, "data").data
    for key in ("format_version", "sgrec_version", "config", "seed", "wall_time_s", "inputs",
                "outputs", "dataset"):
        assert key in m
    assert m["config"]["max_history"] == 20 and m["config"]["format"] == "letter"
    assert any(k.endswith("Toy.inter.json") for k in m["inputs"])
    assert set(m["outputs"]) == {"items.jsonl", "sequences.jsonl", "train.jsonl",
                                 "valid.jsonl", "test.jsonl", "stats.json"}


def test_info_lists_steps(toy_letter, tmp_path):
    prepare(tmp_path, PrepareConfig(source=str(toy_letter)))
    res = runner.invoke(app, ["info", "--run", str(tmp_path)])
    assert res.exit_code == 0 and "users: 5" in res.stdout
    res = runner.invoke(app, ["info", "--run", str(tmp_path), "--json"])
    step = json.loads(res.stdout)["steps"][0]
    assert step["step"] == "data" and step["status"] == "ok" and step["stats"]["items"] == 8
    # a tampered artifact is reported as invalid by info
    (tmp_path / "data" / "items.jsonl").write_text("{}\n")
    step = json.loads(runner.invoke(app, ["info", "--run", str(tmp_path), "--json"]).stdout)[
        "steps"][0]
    assert step["status"] == "invalid" and "does not match its manifest" in step["error"]


def test_p5_with_explicit_item_text(tmp_path):
    src = tmp_path / "p5"
    src.mkdir()
    (src / "user_sequence.txt").write_text("A x y z\nB z y x w\n", encoding="utf-8")
    text = tmp_path / "titles.txt"
    text.write_text("w thing w\nx thing x\ny thing y\nz thing z\n", encoding="utf-8")
    res = prepare(tmp_path / "run", PrepareConfig(source=str(src), item_text=str(text)))
    data = load_data(tmp_path / "run")
    # item order follows the item-text file; w, x, y, z -> 0, 1, 2, 3
    assert [it["title"] for it in data.items()] == ["thing w", "thing x", "thing y", "thing z"]
    assert data.sequences() == [[1, 2, 3], [3, 2, 1, 0]]
    assert res.manifest["config"]["format"] == "p5"


# ---- help: every command, walked from the Typer app ---------------------------------------------


def _walk(cmd, path=()):
    """(path, command) for cmd and every command and sub-command under it."""
    yield path, cmd
    if hasattr(cmd, "list_commands"):  # a group: `sgrec` itself, `sgrec judge`
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name))


# "judge show" -> its command; from the app itself, so a new command is covered automatically
COMMANDS = {" ".join(path): cmd for path, cmd in _walk(typer.main.get_command(app)) if path}


@functools.cache
def _help(command: str) -> str:
    """`sgrec COMMAND --help`, wide enough that rich does not break words."""
    res = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"},
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.stdout


def _option_help(command: str, option: str) -> str:
    """The help row of ``option`` in the options list (plain text, no markup), wrapped lines
    joined."""
    lines, row = [], False
    for line in _help(command).splitlines():
        if re.match(r"  -", line):  # a new option's row: "  -r, --run <path>   help"
            row = re.match(rf"  (?:-\w, )?{re.escape(option)}[\s/]", line) is not None
        elif not line.startswith("   "):  # the list ended
            row = False
        if row:
            lines.append(line.strip())
    assert lines, f"no help row for {option} in `sgrec {command} --help`"
    return " ".join(" ".join(lines).split())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_has_an_example(command):
    text = " ".join(_help(command).split())
    assert f"Example: sgrec {command} " in text, f"`sgrec {command} --help` has no example"


# every option generated from a step config: (command, flag, {mode: default})
SPECS = {"prepare": cli.PREPARE, "build-sids": cli.SIDS, "train": cli.TRAIN, "judge": cli.JUDGE,
         "eval": cli.EVAL, "recommend": cli.RECOMMEND, "serve": cli.SERVE, "report": cli.REPORT}
CONFIG_OPTIONS = [(command, by_mode[next(iter(by_mode))].flag,
                   {m: d.default for m, d in by_mode.items()})
                  for command, spec in SPECS.items()
                  for by_mode in spec.owners().values() if next(iter(by_mode.values())).cli]


@pytest.mark.parametrize(("command", "option", "defaults"), CONFIG_OPTIONS,
                         ids=[f"{c} {o}" for c, o, _ in CONFIG_OPTIONS])
def test_every_option_help_shows_its_own_default(command, option, defaults):
    """The help shows the config's own default (each mode's where they differ); an option
    whose default is None says in words what happens then."""
    text = _option_help(command, option)
    shown = {describe(v) for v in defaults.values() if v is not None}
    if shown and None in defaults.values():  # the modes with a default name theirs
        for mode, value in defaults.items():
            assert value is None or f"{mode} {describe(value)}" in text, text
    elif not shown:
        m = re.search(r"\[default: ([^\]]+)\]", text)
        assert m and m.group(1).lower() not in ("none", "null"), text
    elif len(shown) == 1:
        assert f"[default: {shown.pop()}]" in text, text
    else:
        for mode, value in defaults.items():
            assert f"{mode} {describe(value)}" in text, text


def test_commands_are_found_and_version():
    assert {"prepare", "build-sids", "train", "judge", "judge show", "eval", "recommend",
            "serve", "report", "info"} == set(COMMANDS)
    assert len(CONFIG_OPTIONS) > 100
    assert runner.invoke(app, ["--version"]).stdout.startswith("sgrec ")


def test_python_api_example_runs(tmp_path):
    """examples/prepare_api.py, the README's Python API, runs as written."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "prepare_api.py"
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "users," in res.stdout and "-> target" in res.stdout
    assert (tmp_path / "runs" / "my_shop" / "data" / "manifest.json").is_file()
