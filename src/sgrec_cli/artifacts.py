"""Run directory layout, manifests, content hashes and atomic writes (docs/design.md §2).

Every step writes into ``RUN/<step>/``. The folder is first built under a temporary name inside
the run directory and only renamed into place once complete, with ``manifest.json`` written last,
so a killed or failing step never leaves a half-written artifact that a later step would accept,
and never touches the previous version of that step until the new one is whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def temp_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder in ``parent`` with the permissions of a plain ``mkdir`` (mkdtemp's
    are 0700: a server running as another user could not read a step folder made from it)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    tmp.chmod(0o777 & ~_UMASK)
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one
    (with a plain file's permissions, not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dump_json(obj))


def write_jsonl(path: Path, rows: Any) -> None:
    """Write rows as JSON lines (used inside a staged step folder, which is itself atomic)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")


def read_jsonl(path: Path) -> list[Any]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ArtifactError(f"corrupted artifact line: {e.msg}", f"{path}:{n}") from None
    return rows


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one step folder."""

    path: Path
    data: dict[str, Any]
    digest: str  # sha256 of the manifest file: the identity of this artifact

    @property
    def step(self) -> str:
        return self.data["step"]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.data.get("dataset", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.data.get("config", {})


def step_dir(run: Path, step: str) -> Path:
    return Path(run) / step


class KeepExisting(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside ``staged_step`` when ``RUN/<step>`` already holds exactly this result: the
    staged folder is dropped and the existing one (its manifest included) is left as it is."""


@contextmanager
def staged_step(run: Path, step: str) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``RUN/<step>`` in one rename.

    On any exception the temporary folder is removed and the existing step folder is untouched
    (``KeepExisting`` is that, without an error).
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(run, f".{step}.tmp-")
    try:
        yield tmp
        if not (tmp / MANIFEST).exists():
            raise RuntimeError(f"step {step!r} finished without writing its manifest")
        swap_into_place(tmp, step_dir(run, step))
    except KeepExisting:
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_into_place(new: Path, final: Path) -> None:
    """Make the complete folder ``new`` be ``final``; the previous ``final`` is removed.

    On Linux the two are exchanged in one atomic rename (renameat2 RENAME_EXCHANGE), so a
    reader, or a kill at any moment, sees either the old folder or the new one. Elsewhere the
    old folder is first renamed aside (``.NAME.old-*``); a kill between the two renames leaves
    it there, and ``recover_leftovers`` (run under the run's lock) puts it back.
    """
    if final.exists() and _exchange(new, final):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old content
        return
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    if platform.system() != "Linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def recover_leftovers(folder: Path, names: set[str] | None = None) -> list[str]:
    """Clean what a killed writer left in ``folder``: staging folders (``.X.tmp-*``) are
    removed; an old folder renamed aside (``.X.old-*``) is put back when ``X`` is missing,
    else removed (``names``: only those of these X). Only safe while no other writer works on
    them (the run's lock). Returns what was put back."""
    restored = []
    if not folder.is_dir():
        return restored
    for p in sorted(folder.iterdir()):
        name = p.name
        if not (name.startswith(".") and p.is_dir()):
            continue
        for mark in (".tmp-", ".old-"):
            if mark in name:
                final = folder / name[1:name.index(mark)]
                if names is not None and final.name not in names:
                    break
                if mark == ".old-" and final.name and not final.exists():
                    os.replace(p, final)
                    restored.append(final.name)
                else:
                    shutil.rmtree(p, ignore_errors=True)
                break
    return restored


def write_manifest(
    folder: Path,
    *,
    step: str,
    config: dict[str, Any],
    seed: int | None,
    started: float,
    inputs: dict[str, str],
    dataset: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``folder/manifest.json`` last, recording the hash of every file already in ``folder``.

    ``inputs`` maps each consumed artifact (a previous step's manifest or a raw file) to its sha256.
    """
    outputs = {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "sgrec_version": __version__,
        "step": step,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": round(time.time() - started, 3),
        "seed": seed,
        "python": platform.python_version(),
        "config": config,
        "dataset": dataset,
        "inputs": inputs,
        "outputs": outputs,
    }
    if extra:
        manifest.update(extra)
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def load_manifest(run: Path, step: str, *, verify: bool = True) -> Manifest:
    """Load and check ``RUN/<step>/manifest.json``; raise one clear ArtifactError if unusable.

    With ``verify`` every output file is re-hashed, so a truncated or edited artifact is refused.
    """
    folder = step_dir(run, step)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"no '{step}' step here; run `sgrec {producer(step)}` first", folder)
    if not path.is_file():
        raise ArtifactError(
            f"'{step}' has no {MANIFEST}: the step did not finish; run it again", folder
        )
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"unreadable manifest ({e})", path) from None
    if not isinstance(data, dict):
        raise ArtifactError("manifest is not a JSON object", path)
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"format version {version!r} is not supported by sgrec {__version__} "
            f"(expects {FORMAT_VERSION}); re-run the step with this version",
            path,
        )
    if data.get("step") != step:
        raise ArtifactError(f"manifest belongs to step {data.get('step')!r}, not {step!r}", path)
    outputs = data.get("outputs")
    if not isinstance(outputs, dict):
        raise ArtifactError("manifest has no 'outputs' table", path)
    if verify:
        for name, digest in outputs.items():
            f = folder / name
            if not f.is_file():
                raise ArtifactError(f"file listed in the manifest is missing: {name}", folder)
            if sha256_file(f) != digest:
                raise ArtifactError(
                    "content does not match its manifest (edited or corrupted); re-run the step",
                    f,
                )
    return Manifest(path=path, data=data, digest=sha256_bytes(raw))


def require_same_dataset(manifest: Manifest, fingerprint: str) -> None:
    """Refuse an artifact built from a different dataset than the run's current ``data/``."""
    theirs = manifest.dataset.get("fingerprint")
    if theirs != fingerprint:
        raise ArtifactError(
            f"built from a different dataset (fingerprint {str(theirs)[:12]} vs the run's "
            f"{fingerprint[:12]}); re-run this step on the current data",
            manifest.path,
        )


# step folder -> the command that writes it (what an error tells the user to run)
_PRODUCERS = {"data": "prepare SOURCE", "sids": "build-sids", "sft": "train",
              "sasrec": "train --model sasrec", "judge": "judge", "a2po": "train --a2po",
              "eval": "eval", "report": "report"}


def producer(step: str) -> str:
    """The `sgrec` command that writes ``RUN/<step>`` (a2po-TAG: ``train --a2po --tag TAG``)."""
    if step.startswith("a2po-"):
        return f"train --a2po --tag {step[len('a2po-'):]}"
    return _PRODUCERS.get(step, step)


def list_steps(run: Path) -> list[str]:
    """Step folders present in a run directory, in workflow order, then any others."""
    run = Path(run)
    if not run.is_dir():
        return []
    present = {p.name for p in run.iterdir() if p.is_dir() and not p.name.startswith(".")}
    ordered = [s for s in _PRODUCERS if s in present]
    return ordered + sorted(present - set(ordered))


def not_a_file(path: Path) -> Path:
    """``path``, refused when it names a file (``--run`` must be a folder, existing or not)."""
    if path.exists() and not path.is_dir():
        raise ArtifactError("is a file, not a run directory; give --run a folder", path)
    return path
