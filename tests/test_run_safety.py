"""A run directory never loses or mixes results: one test per reproduced failure,
two real processes on one run, kill -9 of a re-train, and the lock's own behaviour."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import toy_items, write_letter
from sgrec_cli.artifacts import load_manifest
from sgrec_cli.cli import app

LOCK = ".lock"  # (the lock's own tests import sgrec_cli.runlock; items 1-7 use the CLI only)

runner = CliRunner()
TINY = ["--d-model", "32", "--num-layers", "1", "--valid-users", "0", "--device", "cpu",
        "--no-progress"]


def sgrec(*args: str):
    return runner.invoke(app, [*args])


def train(run: Path, *args: str):
    return sgrec("train", "--run", str(run), *TINY, *args)


def manifest_bytes(run: Path, step: str) -> bytes:
    return (run / step / "manifest.json").read_bytes()


def info(run: Path) -> dict:
    res = sgrec("info", "--run", str(run), "--json")
    assert res.exit_code == 0, res.output
    return {s["step"]: s for s in json.loads(res.stdout)["steps"]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sgrec_cli.cli", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "SGREC_PROGRESS_EVERY": "1"}


# ------------------------------------------------------------------------- 1: prepare again


def test_1_identical_prepare_keeps_the_manifest_and_later_steps(sid_run):
    before = manifest_bytes(sid_run, "data")
    res = sgrec("prepare", str(sid_run.parent / "src"), "--run", str(sid_run))
    assert res.exit_code == 0, res.output
    assert manifest_bytes(sid_run, "data") == before
    res = train(sid_run, "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "left as it was" in sgrec("prepare", str(sid_run.parent / "src"), "--run",
                                     str(sid_run)).stdout
    assert {s["status"] for s in info(sid_run).values()} == {"ok"}


# ------------------------------------------------------------------ 2: info checks the links


def test_2_info_names_each_broken_link(sid_run, tmp_path):
    import shutil

    assert info(sid_run)["sids"]["status"] == "ok"
    # data prepared again with other settings under sids/
    res = sgrec("prepare", str(sid_run.parent / "src"), "--run", str(sid_run), "--max-history",
                "5", "--force")
    assert res.exit_code == 0, res.output
    sids = info(sid_run)["sids"]
    assert sids["status"] == "stale" and "data was rebuilt since" in sids["error"]
    assert "sgrec build-sids" in sids["error"]
    res = sgrec("info", "--run", str(sid_run))
    assert "stale" in res.stdout and "sgrec build-sids" in res.stdout

    # an edit to data/manifest.json (its files still match it)
    other = tmp_path / "edited"
    shutil.copytree(sid_run, other)
    res = sgrec("build-sids", "--run", str(other), "--method", "rqkmeans", "--codebook-size",
                "8", "--dedup", "suffix", "--cache-dir", str(sid_run.parent / "cache"),
                "--no-progress")
    assert res.exit_code == 0, res.output
    assert info(other)["sids"]["status"] == "ok"
    m = json.loads((other / "data" / "manifest.json").read_text())
    m["created_at"] = "2020-01-01T00:00:00+0000"
    (other / "data" / "manifest.json").write_text(json.dumps(m))
    assert info(other)["data"]["status"] == "ok"
    assert info(other)["sids"]["status"] == "stale"

    # another dataset's sids/
    src = write_letter(tmp_path / "other-src", {f"v{u}": [(u + k) % 12 for k in range(5)]
                                               for u in range(12)}, toy_items(12), name="Other")
    res = sgrec("prepare", str(src), "--run", str(other), "--force")
    assert res.exit_code == 0, res.output
    sids = info(other)["sids"]
    assert sids["status"] == "stale" and "different dataset" in sids["error"]
    res = train(other, "--epochs", "1")  # what every other command says too
    assert res.exit_code == 2 and "different dataset" in res.stderr


# ------------------------------------------------------ 3: a refused --resume keeps the model


def test_3_refused_resume_keeps_the_finished_model(sid_run):
    assert train(sid_run, "--epochs", "2").exit_code == 0
    before = manifest_bytes(sid_run, "sft")
    res = train(sid_run, "--resume", "--epochs", "3", "--lr", "0.002")
    assert res.exit_code == 2 and "options ['lr'] differ" in res.stderr
    assert manifest_bytes(sid_run, "sft") == before
    assert info(sid_run)["sft"]["status"] == "ok"
    res = sgrec("eval", "--run", str(sid_run), "--model", "sft", "--n-boot", "50")
    assert res.exit_code == 0, res.output


# ------------------------------------------------- 4: two real processes on one run directory


def _wait_until_working(run: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``proc`` holds the run's lock (or, on a version without one, has started to
    train: what the second job would then mix with)."""
    deadline, started = time.time() + timeout, time.time()
    log = run / ".sft.resume" / "train_log.jsonl"
    while time.time() < deadline:
        assert proc.poll() is None, "the first job ended before it started to work"
        try:
            if json.loads((run / LOCK).read_text() or "{}").get("pid") == proc.pid:
                return
        except (OSError, json.JSONDecodeError):
            pass
        if log.is_file() and log.stat().st_mtime > started:
            return
        time.sleep(0.05)
    raise AssertionError("the first job never started to work")


def test_4_second_job_on_a_run_is_refused_naming_the_holder(sid_run):
    # long enough (about a minute) to outlast three CLI start-ups on a busy machine
    first = subprocess.Popen(cli("train", "--run", str(sid_run), *TINY, "--epochs", "80",
                                 "--patience", "80", "--batch-size", "16", "--seed", "0",
                                 "--objective", "prefix"),
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_working(sid_run, first)
        second = subprocess.run(cli("train", "--run", str(sid_run), *TINY, "--epochs", "2",
                                    "--seed", "1", "--lr", "0.003"),
                                env=ENV, capture_output=True, text=True, timeout=300)
        evaluating = subprocess.run(cli("eval", "--run", str(sid_run), "--model", "popular"),
                                    env=ENV, capture_output=True, text=True, timeout=300)
        reading = sgrec("info", "--run", str(sid_run))  # readers are never refused
        assert first.poll() is None, "the first job finished too soon for the test to mean much"
    finally:
        out, err = first.communicate(timeout=600)
    assert second.returncode == 75, second.stderr
    assert "in use by `sgrec train" in second.stderr and f"pid {first.pid}" in second.stderr
    assert second.stderr.count("\n") == 1  # one line
    assert evaluating.returncode == 75 and "in use by" in evaluating.stderr
    assert reading.exit_code == 0 and "in use by `sgrec train" in reading.stdout
    assert f"pid {first.pid}" in reading.stdout
    assert first.returncode == 0, err
    # the run holds the first job's result, whole
    m = load_manifest(sid_run, "sft")
    assert m.config["seed"] == 0 and m.config["epochs"] == 80 and m.config["lr"] != 0.003
    summary = json.loads((sid_run / "sft" / "summary.json").read_text())
    log = [json.loads(x) for x in (sid_run / "sft" / "train_log.jsonl").open()]
    assert len(log) == summary["epochs_run"]
    assert info(sid_run)["sft"]["status"] == "ok"
    assert not (sid_run / LOCK).exists()  # released
    assert not (sid_run / "eval").exists()


# --------------------------------- 5: kill -9 of a plain re-train leaves the old model usable


def _logged_an_epoch_since(run: Path, started: float) -> bool:
    """A training log (wherever this version keeps it) written since ``started`` has a row."""
    for log in run.rglob("train_log.jsonl"):
        try:
            if log.stat().st_mtime > started and log.read_text().count("\n") >= 1:
                return True
        except OSError:  # replaced or removed meanwhile
            pass
    return False


def _checkpointed_an_epoch_of(run: Path, epochs: int) -> bool:
    """The interrupted training's checkpoint holds an epoch of a run with this budget."""
    try:
        state = json.loads((run / ".sft.resume" / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return False
    return state["config"]["epochs"] == epochs and state["epoch"] >= 1


def test_5_killed_retrain_leaves_the_previous_model_intact(sid_run):
    assert train(sid_run, "--epochs", "2").exit_code == 0
    before = manifest_bytes(sid_run, "sft")
    proc = subprocess.Popen(cli("train", "--run", str(sid_run), *TINY, "--epochs", "200",
                                "--patience", "200", "--seed", "1"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    started = time.time()
    while time.time() < deadline and proc.poll() is None:
        if _logged_an_epoch_since(sid_run, started) and _checkpointed_an_epoch_of(sid_run, 200):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the re-train finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert manifest_bytes(sid_run, "sft") == before
    assert info(sid_run)["sft"]["status"] == "ok"
    # and `info` says that --resume continues the killed training
    shown = sgrec("info", "--run", str(sid_run))
    assert re.search(r"sft  interrupted at epoch \d+ of 200: `sgrec train --run \S+ --resume` "
                     "continues it", shown.stdout), shown.stdout
    res = sgrec("eval", "--run", str(sid_run), "--model", "sft", "--n-boot", "50")
    assert res.exit_code == 0, res.output
    assert "took over the lock" in res.stderr and f"pid {proc.pid}" in res.stderr
    assert not [p for p in sid_run.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------- 6: a judge of three users says what it is


def test_6_small_judge_neither_replaces_a_larger_one_nor_reports_a_test(sid_run, tmp_path):
    res = sgrec("judge", "--run", str(sid_run), "--candidates", "nn", "--num-candidates", "4",
                "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    before = manifest_bytes(sid_run, "judge")
    cands = tmp_path / "three.jsonl"
    cands.write_text("".join(json.dumps({"user": u, "items": [str(i) for i in range(8, 14)]})
                             + "\n" for u in ("u1", "u2", "u3")))
    args = ["judge", "--run", str(sid_run), "--candidates", "file", "--candidates-file",
            str(cands), "--heldout-fraction", "0.5", "--no-progress"]
    res = sgrec(*args)
    assert res.exit_code == 2 and "holds a judge of 31 users" in res.stderr
    assert "has candidates for 3" in res.stderr and "--force" in res.stderr
    assert manifest_bytes(sid_run, "judge") == before
    assert json.loads((sid_run / "judge" / "summary.json").read_text())[
        "users_with_candidates"] == 31
    res = sgrec(*args, "--force")
    assert res.exit_code == 0, res.output
    agg = json.loads((sid_run / "judge" / "summary.json").read_text())["aggregator"]
    assert agg["heldout_pairs"] < 100 and agg["small_sample"]
    assert f"rests on {agg['heldout_pairs']} pairs from {agg['heldout_users']} users" \
        in agg["small_sample"]
    assert "warning:" in res.stderr and "too few for a reliable figure" in res.stderr
    assert "not a test: only" in res.stdout and "better" not in res.stdout
    assert "small sample" in sgrec("info", "--run", str(sid_run)).stdout

    # a judge built on SIDs the run no longer holds is not worth keeping: no --force needed
    res = sgrec("judge", "--run", str(sid_run), "--candidates", "nn", "--num-candidates", "4",
                "--no-progress")
    assert res.exit_code == 0, res.output
    res = sgrec("build-sids", "--run", str(sid_run), "--method", "rqkmeans", "--codebook-size",
                "8", "--dedup", "suffix", "--seed", "1", "--cache-dir",
                str(sid_run.parent / "cache"), "--no-progress")
    assert res.exit_code == 0, res.output
    assert info(sid_run)["judge"]["status"] == "stale"
    res = sgrec(*args)
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------ 7: the error lines


def test_7_error_lines(sid_run, tmp_path):
    cands = tmp_path / "latin1.jsonl"
    cands.write_bytes('{"user": "u1", "items": ["3"]}\n{"user": "u2", "items": ["café"]}\n'
                      .encode("latin-1"))
    res = sgrec("judge", "--run", str(sid_run), "--candidates", "file", "--candidates-file",
                str(cands), "--no-progress")
    assert res.exit_code == 2 and f"{cands}:2: not valid UTF-8" in res.stderr

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for args in (["prepare", str(sid_run.parent / "src")], ["train"], ["eval"], ["info"],
                 ["recommend", "--history", "1"]):
        res = sgrec(*args, "--run", str(a_file))
        assert res.exit_code == 2 and "is a file, not a run directory" in res.stderr, args
    assert a_file.read_text() == "x"

    res = sgrec("eval", "--run", str(sid_run), "--model", "sasrec")
    assert res.exit_code == 2 and "run `sgrec train --model sasrec` first" in res.stderr


# -------------------------------------------------------------------------------- the lock


def test_lock_is_reentrant_and_refuses_another_holder(tmp_path):
    from sgrec_cli.errors import RunBusyError
    from sgrec_cli.runlock import LOCK, locked

    run = tmp_path / "run"
    with locked(run):
        with locked(run):  # one step calling another in the same process
            pass
        holder = json.loads((run / LOCK).read_text())
        assert holder["pid"] == os.getpid()
        # another process trying the same run
        code = ("import sys; from sgrec_cli.runlock import locked\n"
                "from sgrec_cli.errors import RunBusyError\n"
                f"try:\n    with locked({str(run)!r}): sys.exit(0)\n"
                "except RunBusyError as e:\n    print(e); sys.exit(e.exit_code)\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 75 and f"pid {os.getpid()}" in res.stdout
    assert not (run / LOCK).exists()
    assert RunBusyError("x").exit_code == 75


def test_lock_puts_back_a_folder_renamed_aside_by_a_killed_writer(tmp_path):
    from sgrec_cli.artifacts import recover_leftovers
    from sgrec_cli.runlock import locked

    run = tmp_path / "run"
    (run / ".sft.old-123-456").mkdir(parents=True)
    (run / ".sft.old-123-456" / "manifest.json").write_text("{}")
    (run / ".judge.tmp-abc").mkdir()
    (run / "sids").mkdir()
    (run / ".sids.old-9-9").mkdir()
    (run / ".sft.resume" / ".checkpoint.tmp-x").mkdir(parents=True)
    notes = []
    with locked(run, note=notes.append):
        pass
    assert (run / "sft" / "manifest.json").is_file() and "put back" in notes[0]
    assert sorted(p.name for p in run.iterdir()) == [".sft.resume", "sft", "sids"]
    assert list((run / ".sft.resume").iterdir()) == []
    assert recover_leftovers(tmp_path / "absent") == []


def test_a_failed_first_command_leaves_no_empty_run(tmp_path):
    res = sgrec("prepare", str(tmp_path / "nowhere"), "--run", str(tmp_path / "new-run"))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    assert not (tmp_path / "new-run").exists()


def test_a_file_is_not_a_run(tmp_path):
    from sgrec_cli.errors import ArtifactError
    from sgrec_cli.runlock import locked

    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(ArtifactError, match="is a file"):
        with locked(f):
            pass


HOLD = """
import sys
from sgrec_cli.runlock import locked
own = sys.argv[2] or None
with locked(sys.argv[1], own=own):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


def _holder(run: Path, own: str = "") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), own], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def _try(run: Path, own: str = "") -> subprocess.CompletedProcess:
    code = ("import sys\nfrom sgrec_cli.runlock import locked\n"
            "from sgrec_cli.errors import RunBusyError\n"
            f"try:\n    with locked({str(run)!r}, own={own or None!r}): print('got it')\n"
            "except RunBusyError as e:\n    print(e); sys.exit(e.exit_code)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def _end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()


def test_a2po_tags_share_the_run_but_not_their_own_folder(tmp_path):
    run = tmp_path / "run"
    x = _holder(run, "a2po-x")
    try:
        assert _try(run, "a2po-y").returncode == 0  # another tag: at once
        same = _try(run, "a2po-x")
        assert same.returncode == 75 and f"pid {x.pid}" in same.stdout
        whole = _try(run)  # e.g. prepare, train, judge, eval: would change their inputs
        assert whole.returncode == 75 and f"pid {x.pid}" in whole.stdout
        from sgrec_cli.runlock import holders

        assert len(holders(run)) == 1 and f"pid {x.pid}" in holders(run)[0]
    finally:
        _end(x)
    assert _try(run).returncode == 0
    owner = _holder(run)
    try:
        tagged = _try(run, "a2po-y")
        assert tagged.returncode == 75 and f"pid {owner.pid}" in tagged.stdout
    finally:
        _end(owner)
    # every lock file removed (and the run folder the holders created, being empty)
    assert not run.exists()


def test_a2po_tag_must_be_a_plain_name(sid_run):
    res = sgrec("train", "--run", str(sid_run), "--a2po", "--tag", "../escape")
    assert res.exit_code == 2 and "--tag '../escape' must be letters" in res.stderr


def test_a_killed_tagged_job_leaves_no_lock_behind(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    x = _holder(run, "a2po-x")
    x.kill()
    x.wait()
    assert (run / ".a2po-x.lock").is_file()  # what kill -9 leaves
    res = _try(run)
    assert res.returncode == 0 and "got it" in res.stdout
    assert "removed the lock left by" in res.stderr and f"pid {x.pid}" in res.stderr
    assert sorted(p.name for p in run.iterdir()) == []
