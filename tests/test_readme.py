"""The README's "your own data" commands, run as written (extracted from README.md, so the page
cannot drift from what works): a 200-item CSV shop from `prepare` to an HTTP answer, with the
defaults. Then what a newcomer needs to be true: usable SIDs (few collisions, every level's
codes used) and a generator that beats most-popular."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- own-data:begin -->", "<!-- own-data:end -->"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    lines = [line.strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(("```", "#"))]


def test_the_readme_block_is_what_this_test_runs():
    commands = readme_commands()
    assert commands[0].startswith("sgrec prepare examples/shop")
    assert [c.split()[0] for c in commands] == ["sgrec"] * 7 + ["until", "curl", "kill"]
    assert commands[6].endswith("&") and commands[6].startswith("sgrec serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"sgrec serve exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("sgrec serve never became ready")


def _curl(command: str, port: int) -> dict:
    """`curl -s localhost:8000/recommend -d BODY`, as the README writes it."""
    args = shlex.split(command)
    url = next(a for a in args if a.startswith("localhost:")).replace("8000", str(port))
    body = args[args.index("-d") + 1].encode()
    with urllib.request.urlopen(urllib.request.Request(f"http://{url}", data=body),
                                timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_own_data_from_the_readme_end_to_end(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sgrec = [sys.executable, "-m", "sgrec_cli.cli"]
    port = _free_port()
    server = answer = None
    outputs = {}
    for command in readme_commands():
        command = command.replace("examples/shop", str(ROOT / "examples" / "shop"))
        args = shlex.split(command.rstrip("&"))
        if args[0] == "sgrec" and command.endswith("&"):
            args[args.index("--port") + 1] = str(port)
            server = subprocess.Popen([*sgrec, *args[1:]], cwd=tmp_path, env=env,
                                      stderr=subprocess.PIPE, text=True)
        elif args[0] == "until":  # until curl -sf localhost:8000/ready ...; do sleep 1; done
            assert "localhost:8000/ready" in command
            _wait_ready(port, server)
        elif args[0] == "sgrec":
            res = subprocess.run([*sgrec, *args[1:]], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=900)
            assert res.returncode == 0, f"{command}\n{res.stderr}"
            outputs[args[1]] = res.stdout
        elif args[0] == "curl":
            answer = _curl(command, port)
        elif args[0] == "kill":
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0
    assert answer is not None and len(answer["items"]) == 5, answer

    run = tmp_path / "runs" / "shop"
    sids = json.loads((run / "sids" / "stats.json").read_text())
    assert sids["codebook_size"] == 16  # chosen from the catalogue size
    assert sids["raw_collision_rate"] < 0.35
    assert all(u["used"] >= 0.75 * sids["codebook_size"] for u in sids["level_usage"])
    assert sids["semantic_coherence_level1_leaf_category"]["lift"] > 3
    test = json.loads((run / "eval" / "stats.json").read_text())["splits"]["test"]
    ndcg = {m: r["ndcg@10"] for m, r in test["models"].items()}
    assert ndcg["sft"] > 2 * ndcg["popular"], ndcg
    assert re.search(r"sft − popular NDCG@10 \+[\d.]+ .*: sft better", outputs["eval"])
