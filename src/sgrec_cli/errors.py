"""User-facing errors: each becomes one line on stderr and a non-zero exit code."""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: the run is in use, try again later


class SgrecError(Exception):
    """An error caused by the user's input, reported as one line without a traceback.

    ``where`` names the file and, when known, the line or record: ``items.json: record '17'``.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, where: str | Path | None = None):
        super().__init__(message)
        self.message = message
        self.where = str(where) if where is not None else None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class BadInputError(SgrecError):
    """Malformed or inconsistent input data."""


class ConfigError(SgrecError):
    """An invalid option value; the message names the value and the fix."""


class ArtifactError(SgrecError):
    """A run-directory artifact that is missing, corrupted or from another run."""


class RunBusyError(SgrecError):
    """Another process is writing into the same run directory (exit code 75: try later)."""

    exit_code = EXIT_BUSY


def at(path: str | Path, line: int | None = None, record: str | None = None) -> str:
    """Format a location: ``file:line`` or ``file: record 'key'``."""
    where = str(path)
    if line is not None:
        where += f":{line}"
    if record is not None:
        where += f": record {record!r}"
    return where
