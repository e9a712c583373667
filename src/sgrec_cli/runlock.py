"""The run's lock: one writer at a time, so two jobs never mix their results in one run.

Every command that writes into a run holds ``RUN/.lock``. Most hold it alone (exclusive): a
second writer is refused with one line naming the holder. A step that only adds its own folder
and reads what the others built (``train --a2po --tag T``) shares the run lock with steps of
its kind and holds its own folder's lock alone (``RUN/.a2po-T.lock``): ablations with distinct
tags train at once, while anything that would change their inputs (prepare, build-sids, train,
judge, eval, ...) is refused until they end, and so is a second job on the same tag.

The locks are ``flock``s, which the kernel releases when their process ends however it ends, so
a lock left by a killed process is taken over by the next command (with a note). A lock file
names its holder (JSON: pid, host, command, since) and is removed on release.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from .artifacts import not_a_file, recover_leftovers
from .errors import RunBusyError

LOCK = ".lock"
_held: dict[Path, int] = {}  # run folders this process holds -> nesting depth
F = TypeVar("F", bound=Callable[..., Any])


def _command() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("sgrec", "cli.py", "__main__.py"):
        argv[0] = "sgrec"
    return shlex.join(argv)


def _me() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _describe(h: dict) -> str:
    return (f"`{h.get('command', '?')}` (pid {h.get('pid', '?')} on {h.get('host', '?')}, "
            f"since {h.get('since', '?')})")


def _read(f: IO[str]) -> dict | None:
    f.seek(0)
    text = f.read()
    if not text.strip():
        return None
    try:
        h = json.loads(text)
    except json.JSONDecodeError:
        return {"command": text.strip()[:200]}
    return h if isinstance(h, dict) else None


def _write(f: IO[str], text: str) -> None:
    f.seek(0)
    f.truncate()
    f.write(text)
    f.flush()


def _holder(file: Path) -> dict | None:
    """The holder a lock file names, while that process lives (read without locking, so that
    looking never makes a writer fail)."""
    try:
        with open(file, encoding="utf-8") as f:
            h = _read(f)
    except OSError:
        return None
    return h if h is not None and _alive(h) else None


def _holders(run: Path) -> list[dict]:
    """Who writes into ``run`` now: the holder of the run lock, or those of the step locks."""
    files = [run / LOCK, *sorted(run.glob(".*.lock"))]
    return [h for h in map(_holder, files) if h is not None]


def holders(run: Path) -> list[str]:
    """Who writes into ``run`` now, described (what ``sgrec info`` shows); empty when no one."""
    return [_describe(h) for h in _holders(Path(run))]


def _alive(h: dict) -> bool:
    if h.get("host") != socket.gethostname() or not isinstance(h.get("pid"), int):
        return True  # cannot tell from here
    try:
        os.kill(h["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(file: Path, exclusive: bool) -> IO[str]:
    """Open ``file`` and take its flock without waiting; raise BlockingIOError when held.
    A holder may unlink the file between our open and our flock: the lock we got is then on a
    dead file, and we try again on the new one."""
    while True:
        f = open(file, "a+", encoding="utf-8")  # noqa: SIM115 - held until released
        try:
            fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


def _release(f: IO[str], file: Path, exclusive: bool) -> None:
    """Remove the lock file when no one else holds it (it may have been shared), then unlock."""
    if not exclusive:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the last sharer?
            exclusive = True
        except BlockingIOError:
            pass
    if exclusive:
        file.unlink(missing_ok=True)
    f.close()


@contextmanager
def _hold(file: Path, *, exclusive: bool, say: Callable[[str], None]) -> Iterator[None]:
    """Hold one lock file of a run; held by another: RunBusyError naming it (the file's holder,
    else whoever writes into the run: a shared run lock names no one itself)."""
    try:
        f = _acquire(file, exclusive)
    except BlockingIOError:
        h = _holder(file)
        who = "; ".join(_describe(x) for x in ([h] if h else _holders(file.parent)))
        raise RunBusyError(f"in use by {who or 'another process'}; wait for it to finish or "
                           "use another --run", file.parent) from None
    try:
        stale = _read(f)
        if stale is not None:
            say(f"note: {file.parent}: took over the lock left by {_describe(stale)}, which "
                "ended without releasing it")
            _write(f, "")
        if exclusive:
            _write(f, _me())
        yield
    finally:
        _release(f, file, exclusive)


@contextmanager
def locked(path: Path | str, *, own: str | None = None,
           note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold run folder ``path``'s lock (the folder is created if needed) while the block runs.

    ``own=None``: the whole run, alone. ``own=STEP``: the run shared with other such writers,
    and STEP's lock alone. Held by another process: ``RunBusyError`` naming it. Held by this
    process already (one step calling another): allowed. Under torchrun only rank 0 locks (the
    other ranks are the same job). Once the run is held alone, what a killed writer left behind
    is cleaned up (``recover_leftovers``); an empty run folder this call created is removed."""
    path = not_a_file(Path(path))
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    say = note or (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        with ExitStack() as stack:
            stack.enter_context(_hold(path / LOCK, exclusive=own is None, say=say))
            if own is None:
                _drop_step_locks(path, say)
                folders = [(path, None), *((f, None) for f in sorted(path.glob(".*.resume")))]
            else:  # the step's own lock, and only its own leftovers
                stack.enter_context(_hold(path / f".{own}{LOCK}", exclusive=True, say=say))
                folders = [(path, {own, f".{own}.resume"}), (path / f".{own}.resume", None)]
            for folder, names in folders:
                for name in recover_leftovers(folder, names):
                    say(f"note: {folder / name}: put back (a writer was killed while "
                        "replacing it)")
            _held[key] = 1
            try:
                yield
            finally:
                _held.pop(key, None)
    finally:
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # a command that failed before writing leaves no empty run behind


def _drop_step_locks(run: Path, say: Callable[[str], None]) -> None:
    """With the run held alone no step lock can be held: any left is a killed job's."""
    for p in sorted(run.glob(".*.lock")):
        try:
            with open(p, encoding="utf-8") as f:
                h = _read(f)
            p.unlink()
        except OSError:
            continue
        if h is not None:
            say(f"note: {run}: removed the lock left by {_describe(h)}, which ended without "
                "releasing it")


def writes_run(fn: F) -> F:
    """Decorate a step's ``run_step(run, ...)``: it runs holding the run's lock alone."""

    @functools.wraps(fn)
    def wrapper(run, *args, **kwargs):
        with locked(getattr(run, "path", run)):
            return fn(run, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
