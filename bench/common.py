"""What the bench scripts share: running `sgrec`, the preamble of a result JSON, writing it
atomically, and small HTTP helpers (a loopback server, a minimal keep-alive client).

Importing this module puts the checkout's src/ first on sys.path, so a script that then imports
``sgrec_cli`` gets this checkout's code, as the `sgrec` it runs through :func:`sgrec` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# The checkout's CLI (the `sgrec` console script runs the same main). A script comparing two
# versions may point SRC at another source tree's src/ (its `sgrec` children then run that).
SGREC = [sys.executable, "-m", "sgrec_cli.cli"]
SRC = ROOT / "src"


# --- running `sgrec` -----------------------------------------------------------------------

# `sgrec train --a2po`'s defaults before they became the fused SASRec teacher at each user's next
# position (the rank reward, the judge's advantage, every training example, lr 1e-5, 32 groups
# a step for 300 steps): the A2PO benches start their earlier settings from them, so each means
# what it meant when it was measured (the recipe, then the budget)
A2PO_BEFORE_RECIPE = ["--advantage", "a2po", "--business", "rank", "--ranker-shape", "logprob",
                      "--ranker-weight", "1", "--examples", "all", "--lr", "1e-5"]
A2PO_BEFORE = [*A2PO_BEFORE_RECIPE, "--batch-users", "32", "--steps", "300", "--eval-every", "50"]


def sgrec_env(threads: int | None = None) -> dict[str, str]:
    """The environment of an `sgrec` child: src/ on PYTHONPATH, and ``threads`` BLAS/OpenMP
    threads when given (one thread per job when two run at once)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def sgrec_command(*args: str) -> list[str]:
    return [*SGREC, *args]


def sgrec(*args: str, threads: int | None = None) -> None:
    """Run `sgrec ARGS` (echoed on stderr; its output goes to the terminal); fail on an error."""
    print("$ sgrec " + shlex.join(args), file=sys.stderr, flush=True)
    subprocess.run(sgrec_command(*args), check=True, env=sgrec_env(threads))


def sgrec_json(*args: str, threads: int | None = None) -> dict:
    """Run `sgrec ARGS --json` and return what it prints (its progress stays on stderr)."""
    print("$ sgrec " + shlex.join(args), file=sys.stderr, flush=True)
    res = subprocess.run(sgrec_command(*args, "--json"), check=True, stdout=subprocess.PIPE,
                         text=True, env=sgrec_env(threads))
    return json.loads(res.stdout)


def done(run: Path, step: str) -> bool:
    """Whether RUN/STEP is finished (a step's folder gets its manifest last)."""
    return (run / step / "manifest.json").is_file()


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- the preamble of a result JSON ------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def git_commit() -> str | None:
    """HEAD's short hash, with ``+dirty`` when tracked code (src/, bench/ scripts) differs."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", "src", "bench",
                   ":(exclude)bench/results")
    return head + ("+dirty" if changed else "")


def command_line() -> str:
    """How this script was called, quoted so that it can be pasted back into a shell."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return "python " + shlex.join([str(script), *sys.argv[1:]])


def _gpus() -> list[str]:
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        torch = sys.modules["torch"]
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=30)
            return [x.strip() for x in res.stdout.splitlines() if x.strip()]
    return []


def machine(threads: int | None = None, **extra) -> dict:
    """python and torch versions, cpu, cores, threads (``threads`` if given, else torch's in
    this process, else $OMP_NUM_THREADS, else "default"), gpus, and the script's ``extra``
    fields (e.g. device)."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    if threads is None:
        threads = (sys.modules["torch"].get_num_threads() if "torch" in sys.modules
                   else os.environ.get("OMP_NUM_THREADS", "default"))
    return {"python": platform.python_version(), "torch": torch_version,
            "os": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": threads, "gpus": _gpus(), **extra}


def preamble(threads: int | None = None, **machine_extra) -> dict:
    """The keys every result JSON starts with: machine, commit, command, date (UTC)."""
    return {"machine": machine(threads, **machine_extra), "commit": git_commit(),
            "command": command_line(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --- writing results ----------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON through a temporary file in the same folder (``*.tmp``,
    git-ignored under bench/results/) and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_result(path: Path, body: dict, threads: int | None = None, **machine_extra) -> dict:
    """Write the preamble followed by ``body`` to ``path`` (atomically); return the document."""
    doc = {**preamble(threads, **machine_extra), **body}
    write_json(path, doc)
    return doc


# --- HTTP ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, obj) -> None:
    """Answer a request with ``obj`` as JSON (for a loopback server's handler)."""
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio): a request is one write, a response is read
    by its Content-Length. Minimal on purpose: httpx spent 5.6 ms of CPU per request, a third of
    a 2-core machine at 110 requests/s, which the server under test then lacked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def request(self, method: str, path: str, body: bytes | dict | None = None
                      ) -> tuple[int, dict]:
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(
            body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith("content-length:"))
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def call(port: int, method: str, path: str, body=None) -> tuple[int, dict]:
    """One request on a fresh connection."""
    conn = await Conn.open(port)
    try:
        return await conn.request(method, path, body)
    finally:
        await conn.close()
