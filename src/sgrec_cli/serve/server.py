"""`sgrec serve`: the server process: load the model, bind the port, run uvicorn until a signal."""


from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .config import ServeConfig


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket (so that a port in use is one clear error, and port 0 a known port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r} cannot be resolved: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(run: Path | str, cfg: ServeConfig, say: Callable[[str], None] = print) -> None:
    """Load ``cfg.model`` of ``run``, then answer HTTP requests until SIGINT / SIGTERM."""
    import uvicorn

    from .app import create_app
    from .recommend import Recommender

    rec = Recommender(run, cfg.model, num_beams=cfg.num_beams, device=cfg.device,
                      decode=cfg.decode)
    rec.load_users()  # not on the event loop at the first {"user": ...} request
    app = create_app(rec, cfg)
    sock = _listen(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    batching = ("off" if cfg.max_batch == 1 else
                f"up to {cfg.max_batch} requests, {cfg.batch_wait_ms:g} ms wait")
    say(f"serving {cfg.model} of {rec.run.path} on http://{host}:{port} "
        f"(batching {batching}; at most {cfg.max_queue} requests held)")
    server = uvicorn.Server(uvicorn.Config(app, log_level=cfg.log_level, access_log=False,
                                           timeout_graceful_shutdown=10))
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again for the
    # handler it found: this one, so that a stop by signal is a clean exit (status 0)
    caught: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in stops}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for s, handler in before.items():
            signal.signal(s, handler)
    how = f" on {signal.Signals(caught[0]).name}" if caught else ""
    say(f"server stopped{how}")
