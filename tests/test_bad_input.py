"""Bad input: one clear line naming the file and record, exit code 2, nothing on disk changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import toy_items, write_letter
from sgrec_cli.cli import app

runner = CliRunner()
GOOD = {"u0": [0, 1, 2, 3], "u1": [1, 2, 3]}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def prepared_run(tmp_path: Path) -> Path:
    """A run directory prepared from a good dataset before each failing call."""
    src = write_letter(tmp_path / "good", GOOD, toy_items(4))
    run = tmp_path / "run"
    res = runner.invoke(app, ["prepare", str(src), "--run", str(run)])
    assert res.exit_code == 0, res.output
    return run


def _letter(tmp_path: Path, inter_text: str, items_text: str | bytes) -> Path:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "Bad.inter.json").write_text(inter_text, encoding="utf-8")
    data = items_text.encode("utf-8") if isinstance(items_text, str) else items_text
    (src / "Bad.item.json").write_bytes(data)
    return src


ITEMS = json.dumps(toy_items(4))


def case_truncated_json(tmp):
    return _letter(tmp, '{"u0": [0, 1, 2], "u1": [1,', ITEMS), ["Bad.inter.json:1", "invalid JSON"]


def case_unknown_item(tmp):
    return (_letter(tmp, '{"u0": [0, 1, 2], "u1": [1, 2, 99]}', ITEMS),
            ["Bad.inter.json: record 'u1'", "item '99'", "not in the item file"])


def case_empty_sequence(tmp):
    return (_letter(tmp, '{"u0": [0, 1, 2], "u1": []}', ITEMS),
            ["record 'u1'", "empty sequence"])


def case_wrong_type_sequence(tmp):
    return (_letter(tmp, '{"u0": [0, 1, 2], "u1": "1 2 3"}', ITEMS),
            ["record 'u1'", "expected a list of item ids"])


def case_wrong_type_field(tmp):
    items = toy_items(4)
    items["2"]["title"] = 42
    return (_letter(tmp, json.dumps(GOOD), json.dumps(items)),
            ["Bad.item.json: record '2'", "'title' must be a string"])


def case_wrong_type_item_id(tmp):
    return (_letter(tmp, '{"u0": [0, 1, 2], "u1": [1, {"id": 2}, 3]}', ITEMS),
            ["record 'u1'", "item id must be a string or an integer"])


def case_non_utf8(tmp):
    items = ITEMS.replace("item 3", "item \udce9").encode("utf-8", "surrogateescape")
    return _letter(tmp, json.dumps(GOOD), items), ["Bad.item.json:1", "not valid UTF-8"]


def case_duplicate_item_ids(tmp):
    body = ITEMS[1:-1]
    dup = '{' + body + ', "1": {"title": "again"}}'
    return (_letter(tmp, json.dumps(GOOD), dup),
            ["Bad.item.json", "duplicate key '1'"])


def case_duplicate_item_ids_p5(tmp):
    src = tmp / "p5"
    src.mkdir()
    (src / "user_sequence.txt").write_text("A x y z\n", encoding="utf-8")
    (src / "item_plain_text.txt").write_text("x one\ny two\nx three\nz four\n",
                                             encoding="utf-8")
    return src, ["item_plain_text.txt:3", "duplicate item id 'x'"]


def case_duplicate_user_p5(tmp):
    src = tmp / "p5"
    src.mkdir()
    (src / "user_sequence.txt").write_text("A x y z\nB x y z\nA z y x\n", encoding="utf-8")
    return src, ["user_sequence.txt:3", "user 'A' appears more than once"]


def case_missing_item_file(tmp):
    src = tmp / "bad"
    src.mkdir()
    (src / "Bad.inter.json").write_text(json.dumps(GOOD), encoding="utf-8")
    return src, ["Bad.item.json", "missing required file"]


def case_missing_source(tmp):
    return tmp / "nowhere", ["nowhere", "does not exist"]


def case_unknown_layout(tmp):
    src = tmp / "odd"
    src.mkdir()
    (src / "notes.txt").write_text("hello", encoding="utf-8")
    return src, ["odd", "cannot tell the dataset format"]


def case_other_dataset(tmp):
    other = {"a": [0, 1, 2, 3, 4], "b": [4, 3, 2, 1, 0]}
    return write_letter(tmp / "other", other, toy_items(5), name="Other"), [
        "already holds another dataset", "'Toy'", "'Other'"]


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__[5:])
def test_bad_input_one_line_exit_2_run_unchanged(case, prepared_run, tmp_path):
    before = snapshot(prepared_run)
    source, expected = case(tmp_path)
    res = runner.invoke(app, ["prepare", str(source), "--run", str(prepared_run)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.output
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert snapshot(prepared_run) == before
    assert not [p for p in prepared_run.iterdir() if p.name.startswith(".")]  # no temp left


def test_bad_option_value_names_the_fix(toy_letter, tmp_path):
    res = runner.invoke(app, ["prepare", str(toy_letter), "--run", str(tmp_path),
                              "--max-history", "0"])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: --max-history 0 must be an integer >= 1 (default 20)")
    assert not (tmp_path / "data").exists()


def test_debug_shows_traceback(tmp_path):
    res = runner.invoke(app, ["--debug", "prepare", str(tmp_path / "nowhere"), "--run",
                              str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" in res.stderr


def test_force_replaces_other_dataset(prepared_run, tmp_path):
    src, _ = case_other_dataset(tmp_path)
    res = runner.invoke(app, ["prepare", str(src), "--run", str(prepared_run), "--force",
                              "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["dataset"]["name"] == "Other"


def test_settings_change_under_later_steps_is_refused(prepared_run, toy_letter):
    (prepared_run / "sids").mkdir()  # a later step that depends on data/
    before = snapshot(prepared_run)
    res = runner.invoke(app, ["prepare", str(prepared_run.parent / "good"), "--run",
                              str(prepared_run), "--max-history", "2"])
    assert res.exit_code == 2 and "max_history 20 -> 2" in res.stderr
    assert snapshot(prepared_run) == before
