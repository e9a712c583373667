"""Strict readers for raw files: every failure names the file and the line or record."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BadInputError, at


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise BadInputError(f"missing required file ({what})", path)
    if not path.is_file():
        raise BadInputError(f"expected a file ({what}), found a folder", path)
    return path


def find_one(source: Path, suffix: str) -> Path | None:
    """``source`` itself when it is a file named ``*suffix``; in a folder, its one ``*suffix``
    file (several are an error: the user picks one); otherwise None."""
    if source.is_file():
        return source if source.name.endswith(suffix) else None
    if source.is_dir():
        found = sorted(p for p in source.glob(f"*{suffix}") if p.is_file())
        if len(found) > 1:
            raise BadInputError(f"several *{suffix} files ({', '.join(p.name for p in found)}); "
                                "pass the one to use", source)
        return found[0] if found else None
    return None


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a whole text file (``.gz`` transparently); invalid bytes are an error with a line."""
    raw = _read_bytes(path)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BadInputError(
            f"not valid {encoding.upper()} text (byte 0x{raw[e.start]:02x} at offset {e.start})",
            at(path, line),
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise BadInputError(f"cannot read file ({e.__class__.__name__}: {e})", path) from None


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for non-blank lines, without the newline."""
    for n, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if line.strip():
            yield n, line


def _no_duplicate_keys(path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise BadInputError(f"duplicate key {k!r} in a JSON object", path)
            out[k] = v
        return out

    return hook


def load_json(path: Path) -> Any:
    """Parse a JSON file; syntax errors give line and column, duplicate keys are refused."""
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
    except json.JSONDecodeError as e:
        where = at(path, e.lineno)
        raise BadInputError(f"invalid JSON: {e.msg} (column {e.colno})", where) from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for a JSON-lines file."""
    hook = _no_duplicate_keys(path)
    for n, line in iter_lines(path):
        try:
            yield n, json.loads(line, object_pairs_hook=hook)
        except json.JSONDecodeError as e:
            raise BadInputError(f"invalid JSON: {e.msg} (column {e.colno})", at(path, n)) from None


def as_text(value: Any, where: str, field: str) -> str:
    """A text field: a string, a list of strings (joined), or null/absent (empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(v.strip() for v in value if v.strip())
    raise BadInputError(f"field {field!r} must be a string, got {_type(value)}", where)


def as_categories(value: Any, where: str, sep: str = ",") -> list[str]:
    """Categories: a separated string, a list of strings, or a list of lists (Amazon 2014)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(sep) if c.strip()]
    if isinstance(value, list):
        flat: list[str] = []
        for v in value:
            if isinstance(v, list):
                flat.extend(as_categories(v, where, sep))
            elif isinstance(v, str):
                if v.strip():
                    flat.append(v.strip())
            else:
                raise BadInputError(f"field 'categories' holds a {_type(v)}", where)
        return flat
    raise BadInputError(f"field 'categories' must be a string or a list, got {_type(value)}", where)


def as_value(value: Any, where: str, field: str = "value") -> float | None:
    """A price / bid: a number, a numeric string (``"$12.99"`` allowed), or null/absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadInputError(f"field {field!r} must be a number, got a boolean", where)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().lstrip("$").replace(",", ""))
        except ValueError:
            raise BadInputError(f"field {field!r} is not a number: {value!r}", where) from None
    raise BadInputError(f"field {field!r} must be a number, got {_type(value)}", where)


def as_number(value: Any, where: str, field: str) -> float:
    """A finite number: a JSON number or a numeric string (a timestamp, a rating)."""
    if isinstance(value, bool):
        raise BadInputError(f"{field} must be a number, got a boolean", where)
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise BadInputError(f"{field} must be a number, got {value!r}", where) from None
    else:
        raise BadInputError(f"{field} must be a number, got {value!r}", where)
    if not math.isfinite(out):
        raise BadInputError(f"{field} must be a finite number, got {value!r}", where)
    return out


def as_id(value: Any, where: str, field: str) -> str:
    """A user or item id: a non-empty string or an integer (kept as its decimal string)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadInputError(f"{field} must be a string or an integer, got {_type(value)}", where)
    s = str(value).strip()
    if not s:
        raise BadInputError(f"{field} is empty", where)
    return s


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value),
                                                                       type(value).__name__)
