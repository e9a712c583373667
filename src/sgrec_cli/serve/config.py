"""The configs of the two ways to ask a trained model: `sgrec recommend` (a command) and
`sgrec serve` (an HTTP API)."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import DECODE_HELP, DECODE_MODES, MODEL_HELP, check_model
from ..options import StepConfig, option
from ..validate import check_choice, check_device, check_ints, is_int, require

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class RecommendConfig(StepConfig):
    """Top-K items for given histories or users, from a trained model."""

    model: str = option("sft", MODEL_HELP + ".")
    k: int = option(10, "Items per user.", short="-k")
    num_beams: int = option(20, "Generator beams (widened so that k items remain once history "
                            "items are dropped).")
    decode: str = option("auto", DECODE_HELP)
    exclude_history: bool = option(True, "Leave the user's own history items out.")
    device: str = option("auto", "auto, cpu or cuda.")

    def validate(self) -> None:
        check_model(self.model)
        require(is_int(self.k) and self.k >= 1, f"--k {self.k!r} must be an integer >= 1 "
                                                "(default 10)")
        check_ints(self, ("num_beams",), 1)
        check_device(self.device)
        check_choice("decode", self.decode, DECODE_MODES)


@dataclass
class ServeConfig(StepConfig):
    """One model of a run behind an HTTP JSON API, requests batched."""

    model: str = option("sft", MODEL_HELP + ".")
    host: str = option("127.0.0.1", "Address to listen on (127.0.0.1: this machine only; "
                       "0.0.0.0: every interface).")
    port: int = option(8000, "Port (0: any free port, printed at start).")
    num_beams: int = option(20, "Generator beams, as in recommend.")
    decode: str = option("auto", DECODE_HELP)
    max_k: int = option(100, "The largest k a request may ask for.")
    batch_wait_ms: float = option(5.0, "How long the first request of a batch waits for others "
                                  "to join it.")
    max_batch: int = option(64, "Requests per batched search at most (1: batching off).")
    max_queue: int = option(256, "Requests held at once (waiting or being answered); more are "
                            "answered 503.")
    device: str = option("auto", "auto, cpu or cuda.")
    log_level: str = option("warning", "uvicorn's log level: " + ", ".join(LOG_LEVELS) + ".")

    def validate(self) -> None:
        check_model(self.model)
        require(isinstance(self.host, str) and self.host.strip() != "",
                f"--host {self.host!r} must be a host name or address")
        require(is_int(self.port) and 0 <= self.port <= 65535,
                f"--port {self.port!r} must be an integer in 0..65535 (0: any free port)")
        check_ints(self, ("num_beams", "max_k", "max_batch", "max_queue"), 1)
        require(isinstance(self.batch_wait_ms, (int, float))
                and not isinstance(self.batch_wait_ms, bool)
                and 0 <= self.batch_wait_ms <= 1000,
                f"--batch-wait-ms {self.batch_wait_ms!r} must be a number in 0..1000")
        require(self.log_level in LOG_LEVELS,
                f"--log-level {self.log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        check_device(self.device)
        check_choice("decode", self.decode, DECODE_MODES)
