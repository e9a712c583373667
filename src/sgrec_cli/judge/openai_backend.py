"""The ``openai`` judge backend: Stage A prompts sent to an OpenAI-compatible HTTP server.

The offline judge rates millions of (user, candidate) pairs. Doing that in-process with one GPU
is slow; an inference server such as vLLM, SGLang or TGI batches concurrent requests and keeps the
GPU busy. This backend is the client side: it POSTs each prompt to
``{base_url}/chat/completions`` (``base_url`` like ``http://host:8000/v1``) with a bounded number
of requests in flight, and turns every answer into an :class:`~sgrec_cli.judge.prompts.Outcome`.

* With ``use_logprobs`` the server is asked for the top 20 log-probabilities of the first answer
  token; the mass on "1".."5" is read with :func:`~sgrec_cli.judge.prompts.read_scale` (the same
  reading as the in-process ``llm`` backend). Servers that cap ``top_logprobs`` below 20 answer
  HTTP 400: use ``use_logprobs=False`` (or raise the server's limit) there.
* Without log-probabilities the text answer is read with
  :func:`~sgrec_cli.judge.prompts.parse_answer`.

A per-prompt failure never raises and never stops the batch: connection errors, timeouts,
HTTP 429 / 5xx and garbled bodies are retried with exponential back-off, and what still fails
becomes ``Outcome(FAILED)``, recorded as missing like an unreadable answer. Only the standard
library is used, so the backend adds no dependency.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from sgrec_cli.errors import ConfigError
from sgrec_cli.judge.prompts import (
    FAILED,
    OK,
    SCALE,
    UNREADABLE,
    Outcome,
    Prompt,
    parse_answer,
    read_scale,
)
from sgrec_cli.validate import is_int

MAX_TOKENS = 8  # one digit is wanted; a little slack lets "Rating: 4" style answers through
TOP_LOGPROBS = 20  # the OpenAI API maximum; enough to catch " 4" beside "4"
MAX_BACKOFF_S = 60.0  # a single wait never exceeds this, whatever max_retries is
JITTER = 0.1  # up to +10% on each wait, so that workers do not retry in lock-step
SUBMIT_AHEAD = 4  # queued prompts per worker: keeps the pool fed without a future per prompt


class MalformedResponse(ValueError):
    """A 2xx response whose body is not a chat completion (no JSON, no ``choices``)."""


class _Transient(Exception):
    """An attempt that failed in a way worth retrying; the message is the short reason."""


class _Permanent(Exception):
    """An attempt that failed in a way that retrying cannot fix (HTTP 4xx other than 429)."""


class OpenAIBackend:
    """Judge prompts with an OpenAI-compatible ``/chat/completions`` endpoint.

    ``judge(prompts)`` returns one Outcome per prompt, in order. ``stats`` counts HTTP
    ``requests`` sent, ``retries`` made, and the ``ok`` / ``unreadable`` / ``failed`` outcomes.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 concurrency: int = 8, timeout_s: float = 60.0, max_retries: int = 4,
                 backoff_s: float = 1.0, min_mass: float = 0.5, use_logprobs: bool = True):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge base_url must start with http:// or https://, "
                              f"got {base_url!r}")
        if not model:
            raise ConfigError(f"judge model must be a non-empty name, got {model!r}")
        if not is_int(concurrency) or concurrency < 1:
            raise ConfigError(f"judge concurrency must be an integer >= 1, got {concurrency!r}")
        if not timeout_s > 0:
            raise ConfigError(f"judge timeout_s must be > 0 seconds, got {timeout_s!r}")
        if not is_int(max_retries) or max_retries < 0:
            raise ConfigError(f"judge max_retries must be an integer >= 0, got {max_retries!r}")
        if not backoff_s >= 0:
            raise ConfigError(f"judge backoff_s must be >= 0 seconds, got {backoff_s!r}")
        if not 0 <= min_mass <= 1:
            raise ConfigError(f"judge min_mass must be in [0, 1], got {min_mass!r}")

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"openai:{model}"  # part of the cache keys: another model, other answers
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.min_mass = float(min_mass)
        self.use_logprobs = use_logprobs

        # outcome statuses double as keys: "ok", "unreadable", "failed"
        self.stats = {"requests": 0, "retries": 0, OK: 0, UNREADABLE: 0, FAILED: 0}
        self._lock = threading.Lock()
        # why: the pool bounds one judge() call; the semaphore also bounds calls made at once
        # from several threads, so the server never sees more than `concurrency` requests
        self._slots = threading.BoundedSemaphore(concurrency)
        self._rng = random.Random(0)  # jitter only; seeded so that runs are repeatable
        self._sleep = time.sleep  # replaceable in tests
        # why: an opener of our own reads the proxy settings once, at construction
        self._opener = urllib.request.build_opener()

    # -- public -----------------------------------------------------------------------------

    def judge(self, prompts: Sequence[Prompt]) -> list[Outcome]:
        """One Outcome per prompt, in the order of ``prompts``. Never raises for a prompt."""
        results: list[Outcome | None] = [None] * len(prompts)
        if not prompts:
            return []

        def run(i: int, prompt: Prompt) -> None:
            results[i] = self._judge_one(prompt)

        workers = min(self.concurrency, len(prompts))
        window = workers * SUBMIT_AHEAD
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge-openai") as pool:
            pending: set[Future] = set()
            for i, prompt in enumerate(prompts):
                # why: millions of prompts would mean millions of futures; keep a small window
                if len(pending) >= window:
                    _, pending = wait(pending, return_when=FIRST_COMPLETED)
                pending.add(pool.submit(run, i, prompt))
            wait(pending)
        return [r if r is not None else Outcome(FAILED, detail="internal error: no result")
                for r in results]

    # -- one prompt ---------------------------------------------------------------------------

    def _judge_one(self, prompt: Prompt) -> Outcome:
        try:
            outcome = self._with_retries(self._payload(prompt))
        except Exception as exc:  # why: a bug here must cost one prompt, not the whole batch
            outcome = Outcome(FAILED, detail=f"internal error: {type(exc).__name__}: {exc}",
                              extra={"retries": 0})
        self._count(outcome.status)
        return outcome

    def _payload(self, prompt: Prompt) -> bytes:
        body: dict = {"model": self.model, "messages": prompt.messages(), "temperature": 0,
                      "max_tokens": MAX_TOKENS}
        if self.use_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        return json.dumps(body).encode("utf-8")

    def _with_retries(self, payload: bytes) -> Outcome:
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
                self._sleep(self._backoff(attempt - 1))
            try:
                data = self._post(payload)
                outcome = read_completion(data, self.min_mass)
            except _Permanent as exc:
                return Outcome(FAILED, detail=str(exc), extra={"retries": attempt})
            except (_Transient, MalformedResponse) as exc:
                reason = str(exc)
                continue
            return replace(outcome, extra={**outcome.extra, "retries": attempt})
        attempts = self.max_retries + 1
        return Outcome(FAILED, detail=f"{reason} (after {attempts} attempt"
                                      f"{'s' if attempts > 1 else ''})",
                       extra={"retries": self.max_retries})

    def _backoff(self, attempt: int) -> float:
        with self._lock:
            jitter = self._rng.random() * JITTER
        return min(self.backoff_s * 2 ** attempt, MAX_BACKOFF_S) * (1 + jitter)

    def _post(self, payload: bytes) -> object:
        """Send one request and decode the JSON body; raise _Transient / _Permanent /
        MalformedResponse for the retry loop to sort out."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        self._count("requests")
        with self._slots:
            try:
                # note: the timeout applies to each socket operation (connect, each read)
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:  # before URLError: it is a subclass
                snippet = _snippet(_read_quietly(exc))
                reason = f"HTTP {exc.code}: {snippet}" if snippet else f"HTTP {exc.code}"
                exc.close()
                # why: 429 (overloaded) and 5xx (server trouble) pass; other 4xx mean the
                # request itself is wrong, and will be wrong again
                if exc.code == 429 or exc.code >= 500:
                    raise _Transient(reason) from None
                raise _Permanent(reason) from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):  # socket.timeout is TimeoutError
                    raise _Transient(f"timeout after {self.timeout_s:g}s") from None
                raise _Transient(f"connection error: {exc.reason}") from None
            except TimeoutError:  # a read that timed out after the connection was made
                raise _Transient(f"timeout after {self.timeout_s:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"connection error: {type(exc).__name__}: {exc}") from None
        try:
            return json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise MalformedResponse(f"invalid JSON body: {_snippet(body)}") from None

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n


# -- reading a chat completion ------------------------------------------------------------------


def read_completion(data: object, min_mass: float) -> Outcome:
    """Outcome from a decoded chat completion. Raises MalformedResponse when it has no
    ``choices``; a well-formed completion whose answer cannot be read is UNREADABLE."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse(f"response lacks 'choices': {_snippet(json.dumps(data))}")
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    text = text if isinstance(text, str) else None

    top = _first_top_logprobs(choice)
    if top is None:
        outcome = parse_answer(text)
        return replace(outcome, extra={"read": "text"})
    probs = scale_probs(top)
    outcome = read_scale(probs, min_mass)
    # the raw answer goes to detail; the mass (why it may be unreadable) to extra
    return replace(outcome, detail=(text or "").strip(),
                   extra={"read": "logprobs", "mass": sum(probs), "scale": outcome.detail})


def scale_probs(top_logprobs: list) -> list[float]:
    """P("1".."5") from one position's ``top_logprobs``: tokens equal after ``strip()`` (" 4"
    and "4") are merged, other tokens are ignored. Unnormalised: the total is the scale mass."""
    probs = [0.0] * len(SCALE)
    for entry in top_logprobs:
        if not isinstance(entry, dict):
            continue
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or isinstance(logprob, bool) \
                or not isinstance(logprob, (int, float)) or math.isnan(logprob):
            continue
        digit = token.strip()
        if digit in SCALE:
            probs[SCALE.index(digit)] += math.exp(min(float(logprob), 0.0))
    return probs


def _first_top_logprobs(choice: dict) -> list | None:
    """``choice.logprobs.content[0].top_logprobs`` when present and non-empty, else None."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs")
    return top if isinstance(top, list) and top else None


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read() or b""
    except Exception:  # why: the error body is only decoration for the reason
        return b""


def _snippet(body: bytes | str, n: int = 80) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
