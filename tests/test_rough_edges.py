"""Small things a user meets on the way, each fixed and kept fixed: a run folder is never
guessed, help is not cut short, folders are readable by others, RecBole genre columns are read,
progress lines are not repeated, resume says what it continues."""

from __future__ import annotations

import io
import json
import os
import stat

from typer.testing import CliRunner

from sgrec_cli.cli import app
from sgrec_cli.progress import StepProgress

runner = CliRunner()


def test_no_command_guesses_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SGREC_RUN", raising=False)
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 2 and "Missing option '--run'" in res.output
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("SGREC_RUN", str(tmp_path / "r"))  # or from the environment
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 2 and f"{tmp_path / 'r'}: run directory does not exist" in res.stderr


def test_top_level_help_lists_every_command_uncut():
    text = runner.invoke(app, ["--help"], terminal_width=100).stdout
    rows = [line for line in text.splitlines() if line.startswith("  ") and "  " in line[2:]]
    assert len(rows) >= 10 and not any(line.rstrip().endswith("...") for line in rows), text


def test_judge_help_says_it_runs_without_a_subcommand():
    usage = runner.invoke(app, ["judge", "--help"]).stdout.splitlines()[0]
    assert usage == "Usage: sgrec judge [OPTIONS] [show --user USER]"


def test_step_folders_and_files_are_readable_by_others(tmp_path):
    from conftest import toy_items, write_letter

    src = write_letter(tmp_path / "src", {f"u{u}": [(u + k) % 8 for k in range(4)]
                                          for u in range(6)}, toy_items(8))
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["prepare", str(src), "--run", str(tmp_path / "r")])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    folder = tmp_path / "r" / "data"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "manifest.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "stats.json").stat().st_mode) == 0o644


def test_recbole_genres_in_a_class_column_are_read(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ml.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"u{u}\ti{(u + k) % 5}\t{k}\n" for u in range(4) for k in range(4)), encoding="utf-8")
    (folder / "ml.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                    + "".join(f"i{i}\tfilm {i}\tDrama Comedy\n" for i in range(5)),
                                    encoding="utf-8")
    res = runner.invoke(app, ["prepare", str(folder), "--run", str(tmp_path / "r")])
    assert res.exit_code == 0 and "no category column" not in res.output
    item = json.loads((tmp_path / "r" / "data" / "items.jsonl").read_text().splitlines()[0])
    assert item["categories"] == ["Drama", "Comedy"]
    # a file with no category column at all says so, naming the columns it did not read
    (folder / "ml.item").write_text("item_id:token\tmovie_title:token_seq\ttags:token_seq\n"
                                    + "".join(f"i{i}\tfilm {i}\tx y\n" for i in range(5)),
                                    encoding="utf-8")
    res = runner.invoke(app, ["prepare", str(folder), "--run", str(tmp_path / "r2")])
    assert "warning: ml.item: no category column" in res.stderr and "tags" in res.stderr


def test_a_redirected_progress_line_is_not_printed_twice(monkeypatch):
    """The last periodic line already said the final state: no second line with the same
    figures; a final line comes only when something changed since."""
    monkeypatch.setenv("SGREC_PROGRESS_EVERY", "0")  # a line at every step
    out = io.StringIO()
    with StepProgress(True, "a2po steps", total=2, stream=out) as bar:
        for step in (1, 2):
            bar.note(f"best {step}")
            bar.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].endswith("best 2"), lines
