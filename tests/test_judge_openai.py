"""The `openai` judge backend against a real HTTP server on loopback.

The server implements POST /v1/chat/completions; each test sets ``server.reply`` to a function
``(n, payload) -> (status, body, delay_s)`` where ``n`` counts requests from 0.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sgrec_cli.errors import ConfigError
from sgrec_cli.judge.openai_backend import OpenAIBackend
from sgrec_cli.judge.prompts import FAILED, OK, UNREADABLE, make_prompt

CANDIDATE = re.compile(r"Candidate product: (\S+)")


def completion(text: str | None, top: list[tuple[str, float]] | None = None) -> dict:
    """A chat completion; ``top`` = (token, probability) pairs for the first answer token."""
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{
            "token": top[0][0], "logprob": math.log(top[0][1]),
            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in top]}]}
    return {"id": "cmpl-1", "object": "chat.completion", "model": "m", "choices": [choice]}


def ok_json(obj: dict, delay: float = 0.0) -> tuple[int, bytes, float]:
    return 200, json.dumps(obj).encode(), delay


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.payloads: list[dict] = []
        self.headers_seen: list[dict] = []
        self.reply = lambda n, payload: ok_json(completion("3"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        pass  # a client that timed out closes the socket under a sleeping handler: expected


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with srv.lock:
            n = srv.count
            srv.count += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            payload = json.loads(raw)
            with srv.lock:
                srv.payloads.append(payload)
                srv.headers_seen.append(dict(self.headers))
            if self.path != "/v1/chat/completions":
                status, body, delay = 404, b"not found", 0.0
            else:
                status, body, delay = srv.reply(n, payload)
            if delay:
                time.sleep(delay)
        finally:
            with srv.lock:
                srv.in_flight -= 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def backend(server: FakeServer, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 2.0)
    return OpenAIBackend(server.base_url, "m", **kw)


def prompt(candidate: str = "c"):
    return make_prompt("m", ["a", "b"], candidate, "profile")


# -- reading answers -------------------------------------------------------------------------


def test_logprobs_answer_gives_expected_score_and_request_shape(server):
    # " 4" and "4" merge; "Sure" is not on the scale. Mass 0.9 >= min_mass 0.5.
    top = [("4", 0.5), (" 4", 0.1), ("5", 0.2), ("3", 0.1), ("Sure", 0.05)]
    server.reply = lambda n, payload: ok_json(completion("4", top))
    be = backend(server)
    p = prompt()
    [out] = be.judge([p])
    assert out.status == OK
    p3, p4, p5 = 0.1 / 0.9, 0.6 / 0.9, 0.2 / 0.9
    assert out.score == pytest.approx((2 * p3 + 3 * p4 + 4 * p5) / 4)  # = 28 / 36
    assert out.score == pytest.approx(28 / 36)
    assert out.probs == pytest.approx((0.0, 0.0, p3, p4, p5))
    assert out.detail == "4"
    assert out.extra["retries"] == 0
    assert out.extra["mass"] == pytest.approx(0.9)

    [payload] = server.payloads
    assert payload["model"] == "m"
    assert payload["messages"] == p.messages()
    assert payload["temperature"] == 0 and payload["max_tokens"] == 8
    assert payload["logprobs"] is True and payload["top_logprobs"] == 20
    assert be.name == "openai:m"
    assert be.stats == {"requests": 1, "retries": 0, "ok": 1, "unreadable": 0, "failed": 0}


def test_low_logprob_mass_is_unreadable(server):
    top = [("The", 0.6), ("4", 0.2), ("5", 0.1)]
    server.reply = lambda n, payload: ok_json(completion("The", top))
    be = backend(server, min_mass=0.5)
    [out] = be.judge([prompt()])
    assert out.status == UNREADABLE and out.score is None
    assert out.detail == "The"
    assert be.stats["unreadable"] == 1 and be.stats["requests"] == 1


def test_text_answer_without_logprobs(server):
    server.reply = lambda n, payload: ok_json(completion("4"))
    be = backend(server, use_logprobs=False)
    [out] = be.judge([prompt()])
    assert out.status == OK and out.score == pytest.approx(0.75)
    assert out.detail == "4"
    assert "logprobs" not in server.payloads[0] and "top_logprobs" not in server.payloads[0]


def test_malformed_text_answer_is_unreadable_and_counted(server):
    server.reply = lambda n, payload: ok_json(completion("I think it is great"))
    be = backend(server)
    [out] = be.judge([prompt()])
    assert out.status == UNREADABLE and out.score is None
    assert out.detail == "I think it is great"
    assert out.extra["retries"] == 0  # a readable server answer is not retried
    assert be.stats["unreadable"] == 1 and be.stats["requests"] == 1 and be.stats["ok"] == 0


# -- retries and failures ----------------------------------------------------------------------


def test_500_twice_then_ok(server):
    server.reply = lambda n, payload: ((500, b"boom", 0.0) if n < 2
                                       else ok_json(completion("5")))
    be = backend(server)
    [out] = be.judge([prompt()])
    assert out.status == OK and out.score == pytest.approx(1.0)
    assert out.extra["retries"] == 2
    assert server.count == 3
    assert be.stats["retries"] == 2 and be.stats["requests"] == 3 and be.stats["ok"] == 1


def test_429_is_retried(server):
    server.reply = lambda n, payload: ((429, b"slow down", 0.0) if n == 0
                                       else ok_json(completion("2")))
    [out] = backend(server).judge([prompt()])
    assert out.status == OK and out.score == pytest.approx(0.25)
    assert out.extra["retries"] == 1


def test_always_500_fails_after_max_retries_with_backoff(server):
    server.reply = lambda n, payload: (503, b"overloaded", 0.0)
    be = backend(server, max_retries=3)
    waits: list[float] = []
    be._sleep = waits.append
    [out] = be.judge([prompt()])
    assert out.status == FAILED and out.score is None
    assert "503" in out.detail and "4 attempts" in out.detail
    assert out.extra["retries"] == 3
    assert server.count == 4
    assert be.stats == {"requests": 4, "retries": 3, "ok": 0, "unreadable": 0, "failed": 1}
    # exponential back-off with at most 10% jitter
    assert len(waits) == 3
    for attempt, w in enumerate(waits):
        assert 0.01 * 2 ** attempt <= w <= 0.01 * 2 ** attempt * 1.1 + 1e-12


def test_400_fails_without_retry(server):
    server.reply = lambda n, payload: (400, b'{"error": "top_logprobs too large"}', 0.0)
    be = backend(server, max_retries=4)
    [out] = be.judge([prompt()])
    assert out.status == FAILED
    assert out.detail.startswith("HTTP 400") and "top_logprobs" in out.detail
    assert out.extra["retries"] == 0
    assert server.count == 1
    assert be.stats["failed"] == 1 and be.stats["retries"] == 0


def test_timeout_then_fast_answer_is_ok(server):
    server.reply = lambda n, payload: ok_json(completion("4"), delay=0.6 if n == 0 else 0.0)
    be = backend(server, timeout_s=0.2, max_retries=2)
    [out] = be.judge([prompt()])
    assert out.status == OK and out.score == pytest.approx(0.75)
    assert out.extra["retries"] == 1
    assert be.stats["retries"] == 1 and be.stats["ok"] == 1


def test_always_slow_server_fails_with_timeout(server):
    server.reply = lambda n, payload: ok_json(completion("4"), delay=0.6)
    be = backend(server, timeout_s=0.2, max_retries=1)
    [out] = be.judge([prompt()])
    # the client gave up: had it waited for the server (0.6 s) the answer would be OK
    assert out.status == FAILED and "timeout" in out.detail
    assert out.extra["retries"] == 1
    assert be.stats["failed"] == 1 and be.stats["requests"] == 2


def test_invalid_json_body_is_retried_then_fails(server):
    server.reply = lambda n, payload: (200, b"<html>gateway</html>", 0.0)
    be = backend(server, max_retries=2)
    [out] = be.judge([prompt()])
    assert out.status == FAILED and "invalid JSON" in out.detail
    assert server.count == 3 and out.extra["retries"] == 2
    assert be.stats["failed"] == 1


def test_body_without_choices_is_retried(server):
    server.reply = lambda n, payload: (ok_json({"error": {"message": "busy"}}) if n == 0
                                       else ok_json(completion("1")))
    [out] = backend(server).judge([prompt()])
    assert out.status == OK and out.score == pytest.approx(0.0)
    assert out.extra["retries"] == 1


def test_connection_refused_fails_without_raising():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    be = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01,
                       timeout_s=1.0)
    outs = be.judge([prompt("x"), prompt("y")])
    assert [o.status for o in outs] == [FAILED, FAILED]
    assert all("connection error" in o.detail for o in outs)
    assert be.stats["failed"] == 2 and be.stats["requests"] == 4


# -- batches -----------------------------------------------------------------------------------


def test_concurrency_is_bounded_and_order_is_kept(server):
    def reply(n, payload):
        i = int(CANDIDATE.search(payload["messages"][1]["content"]).group(1)[1:])
        return ok_json(completion(str(i % 5 + 1)), delay=0.05)

    server.reply = reply
    be = backend(server, concurrency=3, use_logprobs=False)
    prompts = [prompt(f"c{i}") for i in range(12)]
    outs = be.judge(prompts)
    assert [o.status for o in outs] == [OK] * 12
    assert [o.score for o in outs] == pytest.approx([(i % 5) / 4 for i in range(12)])
    assert 2 <= server.max_in_flight <= 3
    assert be.stats["requests"] == 12 and be.stats["ok"] == 12


def test_mixed_batch_one_bad_prompt_does_not_stop_the_rest(server):
    def reply(n, payload):
        cand = CANDIDATE.search(payload["messages"][1]["content"]).group(1)
        if cand == "bad":
            return 400, b"bad request", 0.0
        if cand == "vague":
            return ok_json(completion("maybe"))
        return ok_json(completion("5"))

    server.reply = reply
    be = backend(server, concurrency=2, use_logprobs=False)
    outs = be.judge([prompt("good1"), prompt("bad"), prompt("vague"), prompt("good2")])
    assert [o.status for o in outs] == [OK, FAILED, UNREADABLE, OK]
    assert be.stats["ok"] == 2 and be.stats["failed"] == 1 and be.stats["unreadable"] == 1


def test_empty_batch_sends_nothing(server):
    be = backend(server)
    assert be.judge([]) == []
    assert server.count == 0


# -- configuration -----------------------------------------------------------------------------


def test_authorization_header(server, monkeypatch):
    backend(server, api_key="sk-test").judge([prompt()])
    assert server.headers_seen[-1]["Authorization"] == "Bearer sk-test"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    backend(server).judge([prompt()])
    assert server.headers_seen[-1]["Authorization"] == "Bearer sk-env"

    monkeypatch.delenv("OPENAI_API_KEY")
    backend(server).judge([prompt()])
    assert "Authorization" not in server.headers_seen[-1]


def test_trailing_slash_in_base_url(server):
    be = OpenAIBackend(server.base_url + "/", "m")
    assert be.url == server.base_url + "/chat/completions"
    assert be.judge([prompt()])[0].status == OK


@pytest.mark.parametrize("kwargs, named", [
    ({"concurrency": 0}, "concurrency"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": -1.0}, "timeout_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"base_url": "localhost:8000/v1"}, "localhost:8000/v1"),
    ({"base_url": "ftp://host/v1"}, "ftp://host/v1"),
    ({"backoff_s": -0.5}, "backoff_s"),
    ({"min_mass": 1.5}, "min_mass"),
])
def test_bad_constructor_arguments(kwargs, named):
    args = {"base_url": "http://127.0.0.1:8000/v1", "model": "m", **kwargs}
    with pytest.raises(ConfigError) as info:
        OpenAIBackend(**args)
    message = str(info.value)
    assert named in message and "\n" not in message
