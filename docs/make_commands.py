"""Write docs/commands.md: every `sgrec` command's `--help`, as the installed CLI prints it.

    python docs/make_commands.py          (or: make docs)

tests/test_docs.py fails when the committed file differs from what this prints, so the
reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from sgrec_cli.cli import app

OUT = Path(__file__).resolve().parent / "commands.md"
COMMANDS = ["prepare", "build-sids", "train", "judge", "judge show", "eval", "recommend",
            "serve", "report", "info"]


def help_text(command: str) -> str:
    res = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=100,
                             env={"COLUMNS": "100"})
    if res.exit_code != 0:
        raise SystemExit(f"`sgrec {command} --help` failed: {res.output}")
    return res.stdout.rstrip()


def render() -> str:
    parts = ["# Command reference",
             "",
             "Generated from `sgrec COMMAND --help` by `python docs/make_commands.py` (`make",
             "docs`); do not edit by hand. Every option of a step can also be set in a TOML",
             "file given with `--config FILE` (keys as the options' names with `_` for `-`;",
             "options on the command line win), and `sgrec info --run RUN --config STEP`",
             "prints the file that reproduces a finished step.",
             "",
             *(f"- [`sgrec {c}`](#sgrec-{c.replace(' ', '-')})" for c in COMMANDS),
             ""]
    for command in COMMANDS:
        parts += [f"## sgrec {command}", "", "```text", help_text(command), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
