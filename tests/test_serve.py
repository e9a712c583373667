"""`sgrec serve`: the batcher on its own (gathering, load shedding, failures), per-query beams
that do not depend on batch companions, and a real uvicorn process on 127.0.0.1 answering what
`sgrec recommend` answers, with each error case, 503 on a full queue and a clean stop on
SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from sgrec_cli.cli import app
from sgrec_cli.config import RecommendConfig
from sgrec_cli.serve.batcher import Batcher, QueueFull
from sgrec_cli.serve.recommend import Recommender, parse_history, recommend, widen

runner = CliRunner()


# ------------------------------------------------------------------------------ the batcher


def test_batcher_gathers_concurrent_requests_into_one_call():
    calls = []

    def fn(jobs):
        calls.append(list(jobs))
        return [j * 10 for j in jobs]

    async def main():
        b = Batcher(fn, max_batch=8, wait_ms=200)
        await b.start()
        results = await asyncio.gather(*(b.submit(j) for j in range(5)))
        await b.stop()
        return results, b

    results, b = asyncio.run(main())
    assert results == [0, 10, 20, 30, 40]  # each caller its own result
    assert calls == [[0, 1, 2, 3, 4]] and b.batches == 1 and b.jobs == 5 and b.held == 0


def test_batcher_max_batch_splits_and_one_turns_batching_off():
    for max_batch, expect in ((2, [[0, 1], [2, 3], [4]]), (1, [[0], [1], [2], [3], [4]])):
        calls = []

        def fn(jobs, calls=calls):
            calls.append(list(jobs))
            return list(jobs)

        async def main(max_batch=max_batch, fn=fn):
            b = Batcher(fn, max_batch=max_batch, wait_ms=50)
            await b.start()
            out = await asyncio.gather(*(b.submit(j) for j in range(5)))
            await b.stop()
            return out

        assert asyncio.run(main()) == [0, 1, 2, 3, 4]
        assert calls == expect


def test_batcher_sheds_load_beyond_max_queue():
    gate = threading.Event()

    def fn(jobs):
        gate.wait(5)
        return list(jobs)

    async def main():
        b = Batcher(fn, max_batch=4, wait_ms=0, max_queue=2)
        await b.start()
        first = [asyncio.ensure_future(b.submit(j)) for j in range(2)]
        await asyncio.sleep(0.05)
        assert b.held == 2
        with pytest.raises(QueueFull, match="max-queue 2"):
            await b.submit(9)
        gate.set()
        out = await asyncio.gather(*first)
        assert b.held == 0
        out.append(await b.submit(7))  # room again
        await b.stop()
        return out

    assert asyncio.run(main()) == [0, 1, 7]


def test_batcher_failure_reaches_each_caller_and_it_keeps_serving():
    def fn(jobs):
        if "bad" in jobs:
            raise RuntimeError("model failed")
        return list(jobs)

    async def main():
        b = Batcher(fn, max_batch=8, wait_ms=100)
        await b.start()
        res = await asyncio.gather(b.submit("bad"), b.submit("ok"), return_exceptions=True)
        after = await b.submit("fine")
        await b.stop()
        return res, after

    res, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in res) and after == "fine"


def test_batcher_refuses_submit_when_stopped():
    async def main():
        b = Batcher(list, max_batch=2)
        with pytest.raises(RuntimeError, match="not running"):
            await b.submit(1)

    asyncio.run(main())


# --------------------------------------------------------------------- queries and parity


def test_widen_golden():
    # history length -> extra beams: 0 for none, else the power of two >= length, at least 8
    assert [widen(n) for n in (0, 1, 7, 8, 9, 16, 17, 33)] == [0, 8, 8, 8, 16, 16, 32, 64]


def test_a_query_does_not_depend_on_its_batch_companions(trained_run):
    rec = Recommender(trained_run, "sft", device="cpu")
    short = rec.resolve(parse_history("1,2"), 5, True)
    long = rec.resolve(parse_history(",".join(str(i) for i in range(3, 13))), 5, True)
    longer = rec.resolve(parse_history(",".join(str(i) for i in range(3, 23))), 5, True)
    # first search: 20 beams + 8; a second one: + the history length rounded up (<= 40 items)
    assert [rec.beams(q) for q in (short, long, longer)] == [28, 28, 28]
    assert [rec.beams(q, wide=True) for q in (short, long, longer)] == [28, 36, 40]
    assert rec.beams(rec.resolve(parse_history("1,2"), 5, False), wide=True) == 20
    alone = rec.answer([short])[0]
    together = rec.answer([longer, short, long, short])
    assert together[1] == together[3]
    assert [x["id"] for x in together[1]["items"]] == [x["id"] for x in alone["items"]]
    assert [x["id"] for x in together[2]["items"]] == [
        x["id"] for x in rec.answer([long])[0]["items"]]
    # the CLI's library call answers the same
    cli = recommend(trained_run, [parse_history("1,2")], RecommendConfig(k=5, device="cpu"))
    assert cli[0] == alone


def test_a_query_left_short_is_searched_again_wider(trained_run):
    # 5 beams (+ 8 for the history): 13 of the 40 items, of which 35 are the history, hold
    # fewer than the 5 others
    rec = Recommender(trained_run, "sft", num_beams=5, device="cpu", decode="beam")
    history = list(range(35))
    q = rec.resolve(parse_history(",".join(map(str, history))), 5, True)
    first, _ = rec.top([q.history], 5, num_beams=rec.beams(q))
    assert (first >= 0).sum() < 5  # the first search alone falls short
    got = rec.answer([q])[0]["items"]
    wide, _ = rec.top([q.history], 5, num_beams=rec.beams(q, wide=True))
    assert [x["id"] for x in got] == [str(i) for i in wide[0]] and len(got) == 5
    assert not {x["id"] for x in got} & set(map(str, history))


def test_a_failing_batch_is_a_500_and_the_app_keeps_serving(trained_run):
    from fastapi.testclient import TestClient

    from sgrec_cli.config import ServeConfig
    from sgrec_cli.serve.app import create_app

    rec = Recommender(trained_run, "sft", device="cpu")
    answer = rec.answer

    def flaky(queries):
        if any(q.k == 7 for q in queries):
            raise RuntimeError("out of memory")
        return answer(queries)

    rec.answer = flaky
    with TestClient(create_app(rec, ServeConfig(device="cpu", batch_wait_ms=0))) as client:
        r = client.post("/recommend", json={"history": ["1"], "k": 7})
        assert r.status_code == 500 and r.json() == {
            "error": "internal error: RuntimeError: out of memory"}
        r = client.post("/recommend", json={"history": ["1"], "k": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3


# ------------------------------------------------------------------- a real server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sgrec_cli.cli", "serve", "--run", str(run),
                             "--port", str(port), "--device", "cpu", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            if call(url, "/ready")[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server not ready in 120 s")


def stop_server(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, stderr


def call(url: str, path: str, body: bytes | str | dict | None = None) -> tuple[int, dict]:
    data = None if body is None else (
        json.dumps(body).encode() if isinstance(body, dict) else
        body.encode() if isinstance(body, str) else body)
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(trained_run):
    proc, url = start_server(trained_run, "--batch-wait-ms", "20")
    yield url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_server_answers_what_recommend_answers(trained_run, server):
    cfg = RecommendConfig(k=5, device="cpu")
    for body, request in (({"history": ["1", 2, "3"], "k": 5}, "--history 1,2,3"),
                          ({"user": "u0", "k": 5}, "--user u0")):
        status, got = call(server, "/recommend", body)
        assert status == 200, got
        res = runner.invoke(app, ["recommend", "--run", str(trained_run), *request.split(),
                                  "--k", "5", "--device", "cpu", "--json"])
        assert res.exit_code == 0, res.output
        assert got == json.loads(res.stdout)[0]
    # without exclusion, history items may come back, as in recommend
    status, got = call(server, "/recommend", {"history": ["1"], "k": 3,
                                              "exclude_history": False})
    want = recommend(trained_run, [parse_history("1")],
                     RecommendConfig(k=3, exclude_history=False, device=cfg.device))[0]
    assert status == 200 and got == want


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server):
    bodies = [{"history": [str(i), str((i + 5) % 40)], "k": 4} for i in range(12)]
    alone = [call(server, "/recommend", b)[1] for b in bodies]
    _, before = call(server, "/info")
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda b: call(server, "/recommend", b), bodies))
    _, after = call(server, "/info")
    assert all(status == 200 for status, _ in together)
    for (_, got), want in zip(together, alone, strict=True):
        assert [x["id"] for x in got["items"]] == [x["id"] for x in want["items"]]
        assert [x["score"] for x in got["items"]] == pytest.approx(
            [x["score"] for x in want["items"]], abs=1e-4)
    answered = after["counters"]["requests_answered"] - before["counters"]["requests_answered"]
    batches = after["counters"]["batches"] - before["counters"]["batches"]
    assert answered == 12 and batches < 12  # gathered, not one search per request


@pytest.mark.parametrize("body, status, message", [
    ('{"history": ["1", ', 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    ("[1, 2]", 400, "must be a JSON object"),
    ({"history": ["1", "999"]}, 422, "history: item '999' is not in the catalogue"),
    ({"user": "nobody"}, 422, "user: user 'nobody' is not in the dataset"),
    ({"history": ["1"], "k": 0}, 422, "k 0 must be in 1..100"),
    ({"history": ["1"], "k": 101}, 422, "k 101 must be in 1..100"),
    ({"history": ["1"], "k": "5"}, 422, "k: Input should be a valid integer"),
    ({"history": "1,2"}, 422, "history: Input should be a valid list"),
    ({"history": []}, 422, "history must be a non-empty list"),
    ({}, 422, 'give "history"'),
    ({"history": ["1"], "user": "u0"}, 422, 'give "history"'),
    ({"histroy": ["1"]}, 422, "histroy: unknown field"),
    ({"history": ["1"], "exclude_history": "no"}, 422, "exclude_history: Input should be"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, status, message):
    got_status, got = call(server, "/recommend", body)
    assert got_status == status and message in got["error"], got
    assert "\n" not in got["error"]
    assert call(server, "/health") == (200, {"status": "ok"})  # still serving


def test_long_history_is_truncated_not_rejected(server):
    status, got = call(server, "/recommend", {"history": [str(i % 40) for i in range(300)],
                                              "k": 3, "exclude_history": False})
    assert status == 200 and len(got["items"]) == 3 and got["history"] == 300


def test_the_listening_socket_names_tcp_so_responses_are_not_delayed():
    """asyncio sets TCP_NODELAY only on accepted sockets whose listening socket has proto
    IPPROTO_TCP; without it every keep-alive response waits ~40 ms for a delayed ACK (the
    latency itself is measured by bench/serve.py, not asserted here)."""
    from sgrec_cli.serve.server import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_health_ready_info(trained_run, server):
    assert call(server, "/health") == (200, {"status": "ok"})
    assert call(server, "/ready") == (200, {"status": "ready", "model": "sft"})
    status, info = call(server, "/info")
    assert status == 200 and info["model"] == "sft" and info["items"] == 40
    assert info["run"] == str(trained_run) and info["manifest"]["step"] == "sft"
    assert info["settings"]["batch_wait_ms"] == 20.0


def test_full_queue_answers_503_and_sigterm_stops_cleanly(trained_run):
    proc, url = start_server(trained_run, "--max-queue", "1", "--batch-wait-ms", "1000")
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, url, "/recommend", {"history": ["1"]})
            while call(url, "/info")[1]["counters"]["held_now"] < 1:
                time.sleep(0.01)  # until the first request is held, gathering its batch
            status, got = call(url, "/recommend", {"history": ["2"]})
            assert status == 503 and "max-queue 1" in got["error"]
            assert first.result()[0] == 200  # the held request is still answered
        assert call(url, "/recommend", {"history": ["2"]})[0] == 200
    finally:
        code, stderr = stop_server(proc)
    assert code == 0 and "server stopped on SIGTERM" in stderr, stderr


def test_serve_refuses_a_run_without_the_model_and_a_bad_option(sid_run):
    res = runner.invoke(app, ["serve", "--run", str(sid_run), "--port", "0"])
    assert res.exit_code == 2 and "sgrec train" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["serve", "--run", str(sid_run), "--max-batch", "0"])
    assert res.exit_code == 2 and "--max-batch 0 must be an integer >= 1" in res.stderr


def test_serve_refuses_a_port_in_use(trained_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = runner.invoke(app, ["serve", "--run", str(trained_run), "--port", str(port),
                                  "--device", "cpu"])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr, res.output
