"""A run directory as one object: each artifact is opened and checked once per command.

``Run(path)`` loads a step's manifest (re-hashing its files) the first time it is asked for and
keeps it; ``run.data`` and ``run.sids`` are loaded once too. ``run.step(name, needs=...)`` is the
one check that a step's folder was built from the artifacts the run holds now (by manifest
digest), with one error that names the command to run again.

``locked(path)`` is the run's lock: every command that writes into a run holds it, so a second
writer is refused with one line naming the holder. It is an ``flock`` on ``RUN/.lock``, which
the kernel releases when its process ends however it ends, so a lock left by a killed process
is simply taken over (with a note). The file is removed when the lock is released.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .artifacts import Manifest, load_manifest, producer, recover_leftovers, require_same_dataset
from .errors import ArtifactError, RunBusyError

if TYPE_CHECKING:
    from .data.store import PreparedData
    from .sids.store import SemanticIds


class Run:
    """One run directory; artifacts are verified once and cached for the command's lifetime."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ArtifactError("is a file, not a run directory; give --run a folder", self.path)
        self._manifests: dict[str, Manifest] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def manifest(self, step: str) -> Manifest:
        """RUN/<step>/manifest.json, checked (files re-hashed) on first use only."""
        if step not in self._manifests:
            self._manifests[step] = load_manifest(self.path, step)
        return self._manifests[step]

    def forget(self, step: str) -> None:
        """Drop a cached manifest (after this command rewrote the step)."""
        self._manifests.pop(step, None)
        if step == "data":
            self.__dict__.pop("data", None)
        if step in ("data", "sids"):
            self.__dict__.pop("sids", None)

    def has(self, step: str) -> bool:
        return (self.path / step).is_dir()

    @cached_property
    def data(self) -> PreparedData:
        from .data.store import PreparedData

        m = self.manifest("data")
        if "fingerprint" not in m.dataset:
            raise ArtifactError("manifest has no dataset fingerprint", m.path)
        return PreparedData(manifest=m, folder=self.path / "data")

    @cached_property
    def sids(self) -> SemanticIds:
        from .sids.store import open_sids

        # another dataset is the more telling refusal, so it is checked first
        require_same_dataset(self.manifest("sids"), self.data.fingerprint)
        return open_sids(self.step("sids", needs=("data",)))

    def step(self, step: str, needs: tuple[str, ...] = ("data",)) -> Manifest:
        """RUN/<step>'s manifest, refused unless it was built from the run's current ``needs``
        (each a step whose manifest digest it recorded as an input)."""
        m = self.manifest(step)
        for need in needs:
            if m.data.get("inputs", {}).get(f"{need}/manifest.json") != self.manifest(need).digest:
                raise ArtifactError(_rebuilt(step, need), m.path)
        return m

    def breaks(self, step: str) -> list[str]:
        """What ties RUN/<step> to an input the run no longer holds: for each step it recorded
        as an input, a problem when that folder is gone, unusable or rebuilt since, and when
        its dataset is not the run's. Empty when every link holds (``sgrec info``'s check)."""
        m = self.manifest(step)
        problems = []
        for key, digest in m.data.get("inputs", {}).items():
            need = key.split("/")[0]
            if not key.endswith("/manifest.json") or need == step:
                continue
            if not self.has(need):
                problems.append(f"its input {need}/ is gone; run `sgrec {producer(step)}` "
                                "again")
                continue
            try:
                now = self.manifest(need).digest
            except ArtifactError:
                problems.append(f"its input {need}/ is unusable (see {need})")
                continue
            if now != digest:
                problems.append(_rebuilt(step, need))
        theirs = m.dataset.get("fingerprint")
        if step != "data" and theirs and self.has("data"):
            try:
                ours = self.manifest("data").dataset.get("fingerprint")
            except ArtifactError:
                ours = None
            if ours and theirs != ours:
                problems.insert(0, f"built from a different dataset (fingerprint {theirs[:12]} "
                                   f"vs the run's {ours[:12]}); run `sgrec {producer(step)}` "
                                   "again on the current data")
        return problems

    def digests(self, *steps: str) -> dict[str, str]:
        """{"<step>/manifest.json": digest}: how a new step records what it consumed."""
        return {f"{s}/manifest.json": self.manifest(s).digest for s in steps}


def _rebuilt(step: str, need: str) -> str:
    return (f"built from another {need}/ folder than the run now holds ({need} was rebuilt "
            f"since); run `sgrec {producer(step)}` again")


def as_run(run: Run | Path | str) -> Run:
    """Accept a Run or a path (the Python API takes either)."""
    return run if isinstance(run, Run) else Run(run)


# ------------------------------------------------------------------------------- the run's lock

LOCK = ".lock"
_held: dict[Path, int] = {}  # run folders this process holds -> nesting depth
F = TypeVar("F", bound=Callable[..., Any])


def _command() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("sgrec", "cli.py", "__main__.py"):
        argv[0] = "sgrec"
    return shlex.join(argv)


def _holder_text(h: dict) -> str:
    return f"`{h.get('command', '?')}` (pid {h.get('pid', '?')} on {h.get('host', '?')}, " \
           f"since {h.get('since', '?')})"


def _read_holder(f) -> dict | None:
    f.seek(0)
    text = f.read()
    if not text.strip():
        return None
    try:
        h = json.loads(text)
    except json.JSONDecodeError:
        return {"command": text.strip()[:200]}
    return h if isinstance(h, dict) else None


@contextmanager
def locked(path: Path | str, *, note: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of run folder ``path`` (created if needed) while the block runs.

    Another process holding it: ``RunBusyError`` naming that process. The same process again
    (one step calling another): allowed. Under torchrun only rank 0 locks (the other ranks are
    the same job). Once held, what a killed writer left behind is cleaned up
    (``recover_leftovers``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError("is a file, not a run directory; give --run a folder", path)
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
    f = _acquire(path)
    try:
        stale = _read_holder(f)
        if stale is not None:
            say(f"note: {path}: took over the lock left by {_holder_text(stale)}, which "
                "ended without releasing it")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "command": _command(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        f.flush()
        for folder in (path, *sorted(path.glob(".*.resume"))):
            for name in recover_leftovers(folder):
                say(f"note: {folder / name}: put back (a writer was killed while "
                    "replacing it)")
        _held[key] = 1
        yield
    finally:
        _held.pop(key, None)
        # removed while still held, so that whoever opens the path next gets a fresh file
        (path / LOCK).unlink(missing_ok=True)
        f.close()  # releases the flock
        if created and not any(path.iterdir()):
            path.rmdir()  # a command that failed before writing leaves no empty run behind


def _acquire(path: Path):
    """Open RUN/.lock and take its flock, or raise RunBusyError naming the holder. The file
    may be unlinked by a holder releasing it between our open and our flock: then the lock we
    got is on a dead file, and we try again on the new one."""
    import fcntl

    while True:
        f = open(path / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held until released
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            h = _read_holder(f) or {}
            f.close()
            raise RunBusyError(
                f"in use by {_holder_text(h)}; wait for it to finish or use another --run",
                path) from None
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(path / LOCK).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


def writes_run(fn: F) -> F:
    """Decorate a step's ``run_step(run, ...)``: it runs holding the run's lock."""

    @functools.wraps(fn)
    def wrapper(run, *args, **kwargs):
        with locked(run.path if isinstance(run, Run) else run):
            return fn(run, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
