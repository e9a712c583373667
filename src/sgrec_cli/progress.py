"""Progress of long steps on stderr (results go to stdout).

On a terminal: a rich progress bar. Redirected to a file (a cluster job's log): a plain line
every ``SGREC_PROGRESS_EVERY`` seconds (default 30) and one at the end, so a log shows that a
12-minute embedding or an hour-long SFT epoch is moving.

    with progress_bar(enabled, "sft", total=n) as bar:
        bar.note("epoch 3 ...")  # the latest status, shown beside the bar / in the next line
        bar.advance()            # one unit done (set the note first: a line may print now)
        bar.print("a message")   # a line above the bar (or a plain line)

``emit(line)`` writes a line to stderr from anywhere: above the live bar while one is showing
(so log lines and training rows never land on the bar's own line), plainly otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_live_bars: list[Progress] = []  # the bars showing now, innermost last
_stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def emit(message: str, *, markup: bool = False) -> None:
    """A line on stderr, above the live progress bar if one is showing. Plain text unless
    ``markup`` (the CLI's own coloured lines): a library's message may hold brackets."""
    console = _live_bars[-1].console if _live_bars else _stderr
    console.print(message, highlight=False, soft_wrap=True, markup=markup)


def _every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SGREC_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepProgress:
    """One task's progress; see the module docstring. Disabled: every call does nothing."""

    def __init__(self, enabled: bool, description: str, total: int | None, completed: int = 0,
                 log: Callable[[str], None] | None = None, stream=None):
        self.enabled = enabled
        self.description = description
        self.total = total
        self.completed = completed
        self.info = ""
        self._log = log
        self._stream = stream if stream is not None else sys.stderr
        self._live = enabled and self._stream.isatty()
        self._every = _every_s()
        self._started = self._last = time.monotonic()
        self._bar: Progress | None = None
        self._task = None
        self._said: tuple[int, str] | None = None  # (completed, info) of the last plain line

    def __enter__(self) -> StepProgress:
        if self._live:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(self.description, total=self.total,
                                            completed=self.completed, info="")
            self._bar.start()
            _live_bars.append(self._bar)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            _live_bars.remove(self._bar)
        elif self.enabled and exc[0] is None and self._said != (self.completed, self.info):
            self._line(final=True)  # unless the last line already said exactly this

    def advance(self, n: int = 1) -> None:
        self.completed += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self.enabled and time.monotonic() - self._last >= self._every:
            self._line()

    def update(self, completed: int) -> None:
        self.advance(completed - self.completed)

    def note(self, info: str) -> None:
        self.info = info
        if self._bar is not None:
            self._bar.update(self._task, info=info)

    def print(self, message: str) -> None:
        """A message above the live bar; otherwise through ``log`` (or the stream)."""
        if self._bar is not None:
            self._bar.console.print(message, highlight=False)
        elif self._log is not None:
            self._log(message)
        elif self.enabled:
            print(message, file=self._stream, flush=True)

    def _line(self, final: bool = False) -> None:
        self._last = time.monotonic()
        self._said = (self.completed, self.info)
        elapsed = self._last - self._started
        done = f"{self.completed:,}" + (f"/{self.total:,}" if self.total else "")
        pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and 0 < self.completed < self.total and not final:
            eta = f", about {_clock(elapsed * (self.total / self.completed - 1))} left"
        info = f"  {self.info}" if self.info else ""
        print(f"{self.description}: {done}{pct} in {_clock(elapsed)}{eta}{info}",
              file=self._stream, flush=True)


def quiet(_message: str) -> None:
    """A log function that drops its message (a process that does not report)."""


def progress_bar(enabled: bool, description: str, total: int | None = None,
                 completed: int = 0, log: Callable[[str], None] | None = None) -> StepProgress:
    return StepProgress(enabled, description, total, completed=completed, log=log)


@contextlib.contextmanager
def hf_bars_off():
    """transformers' own progress bars (loading and writing weights) off for a while."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
