"""Generic CSV / JSONL layout for your own data (``--format csv`` / ``--format jsonl``).

Interactions: a CSV file with a header (``user_id,item_id`` required; ``timestamp`` and
``rating`` optional, other columns ignored) or a JSONL file (one object per line, same keys).
SOURCE is that file or a folder holding ``interactions.csv`` or ``interactions.jsonl``.

Items (optional): ``--items FILE`` or, next to the interactions file, ``items.csv`` /
``items.jsonl``: ``item_id`` (required), ``title``, ``brand``, ``categories`` (CSV: a
``|``-separated string; JSONL: a list of strings or a ``|``-separated string), ``description``,
``value`` (a number). Without an item file every item gets empty text.

With a timestamp each user's items are sorted by it (file order on ties), else file order is
kept; users keep their order of first appearance. Repeated (user, item) pairs are kept.
Text is UTF-8 (a leading byte-order mark is ignored); ``.gz`` files are read transparently.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

from ...errors import BadInputError, at
from ..io import (
    as_categories,
    as_id,
    as_number,
    as_text,
    as_value,
    iter_json_lines,
    read_text,
    require_file,
)
from ..raw import RawDataset, RawItem, timed_sequences

NAME = "generic"
KINDS = ("csv", "jsonl")
INTERACTION_KEYS = ("user_id", "item_id")
ITEM_KEYS = ("item_id",)


def _kind_of(path: Path) -> str | None:
    name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    for kind in KINDS:
        if name.endswith(f".{kind}"):
            return kind
    return None


def _interactions(source: Path, forced: str | None) -> tuple[Path, str]:
    """Return (interactions file, parser kind) or raise."""
    if source.is_file():
        kind = forced or _kind_of(source)
        if kind is None:
            raise BadInputError("cannot tell CSV from JSONL by the file name; pass --format csv "
                                "or --format jsonl", source)
        return source, kind
    kinds = (forced,) if forced else KINDS
    found = [(source / f"interactions.{k}", k) for k in kinds
             if (source / f"interactions.{k}").is_file()]
    if not found:
        names = " or ".join(f"interactions.{k}" for k in kinds)
        raise BadInputError(f"no {names} (generic CSV / JSONL format)", source)
    if len(found) > 1:
        raise BadInputError("both interactions.csv and interactions.jsonl; pass the file to "
                            "use or --format csv / --format jsonl", source)
    return found[0]


def detect(source: Path, kind: str | None = None) -> bool:
    """``source`` is interactions in CSV or JSONL (``kind``: in that one only)."""
    kinds = KINDS if kind is None else (kind,)
    if source.is_file():
        return _kind_of(source) in kinds
    return source.is_dir() and any((source / f"interactions.{k}").is_file() for k in kinds)


def read(source: Path, cfg) -> RawDataset:
    fmt = getattr(cfg, "format", "auto")
    inter_path, kind = _interactions(source, fmt if fmt in KINDS else None)
    min_rating = getattr(cfg, "min_rating", None)

    events: dict[str, list[tuple[float, int, str]]] = {}  # user -> (time, position, item)
    first_line: dict[str, int] = {}
    has_time = has_rating = None
    below = 0
    for n, rec in _records(inter_path, kind, INTERACTION_KEYS):
        where = at(inter_path, n)
        if has_time is None:
            has_time, has_rating = "timestamp" in rec, "rating" in rec
            if min_rating is not None and not has_rating:
                raise BadInputError("--min-rating needs a 'rating' column / key", where)
        _same_keys(rec, "timestamp", has_time, where)
        _same_keys(rec, "rating", has_rating, where)
        user = as_id(rec["user_id"], where, "user_id")
        item = as_id(rec["item_id"], where, "item_id")
        ts = as_number(rec["timestamp"], where, "timestamp") if has_time else 0.0
        rating = as_number(rec["rating"], where, "rating") if has_rating else None
        first_line.setdefault(user, n)
        seq = events.setdefault(user, [])
        if min_rating is not None and rating is not None and rating < min_rating:
            below += 1
            continue
        seq.append((ts, n, item))

    if not events:
        raise BadInputError("no interactions in the file", inter_path)
    sequences = timed_sequences(events, first_line, inter_path)

    items_path = _items_file(inter_path, cfg)
    items = _read_items(items_path, _kind_of(items_path) or kind) if items_path else None
    stem = inter_path.name.split(".")[0]
    name = source.name if source.is_dir() else (
        inter_path.parent.name if stem == "interactions" else stem)
    notes = {"interactions_below_min_rating": below} if below else {}
    files = [inter_path] + ([items_path] if items_path else [])
    return RawDataset(name=name or stem, format=kind, sequences=sequences, items=items,
                      files=files, items_where=str(items_path or ""), notes=notes)


def _same_keys(rec: dict, key: str, expected: bool, where: str) -> None:
    if expected and key not in rec:
        raise BadInputError(f"missing key {key!r} (the first record has one)", where)
    if not expected and key in rec:
        raise BadInputError(f"key {key!r} is present here but not in the first record", where)


def _records(path: Path, kind: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, record)``; CSV cells are strings, JSONL values keep their JSON types."""
    if kind == "jsonl":
        for n, rec in iter_json_lines(path):
            if not isinstance(rec, dict):
                raise BadInputError("expected a JSON object per line", at(path, n))
            for key in required:
                if key not in rec:
                    raise BadInputError(f"missing key {key!r}", at(path, n))
            yield n, rec
        return
    yield from _csv_records(path, required)


def _csv_records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    text = read_text(path).removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise BadInputError(f"invalid CSV: {e}", at(path, start)) from None
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            header_line = start
            dup = [c for c in header if header.count(c) > 1]
            if dup:
                raise BadInputError(f"duplicate column {dup[0]!r} in the header", at(path, start))
            missing = [c for c in required if c not in header]
            if missing:
                raise BadInputError(
                    f"missing required column(s) {', '.join(missing)} in the header "
                    f"(found: {', '.join(header)})", at(path, start))
            continue
        if len(row) != len(header):
            raise BadInputError(f"expected {len(header)} fields as in the header (line "
                                f"{header_line}), got {len(row)}", at(path, start))
        yield start, dict(zip(header, row, strict=True))
    if header is None:
        raise BadInputError(f"empty CSV file (a header with {', '.join(required)} is required)",
                            path)


def _items_file(inter_path: Path, cfg) -> Path | None:
    given = getattr(cfg, "items", None)
    if given:
        return require_file(Path(given), "item file given by --items")
    found = [p for p in (inter_path.with_name("items.csv"), inter_path.with_name("items.jsonl"))
             if p.is_file()]
    if len(found) > 1:
        raise BadInputError("both items.csv and items.jsonl; pass the one to use with --items",
                            inter_path.parent)
    return found[0] if found else None


def _read_items(path: Path, kind: str) -> dict[str, RawItem]:
    items: dict[str, RawItem] = {}
    first: dict[str, int] = {}
    for n, rec in _records(path, kind, ITEM_KEYS):
        where = at(path, n)
        item = as_id(rec["item_id"], where, "item_id")
        if item in items:
            raise BadInputError(f"duplicate item_id {item!r} (first on line {first[item]})",
                                where)
        value = as_value(rec.get("value"), where, "value")
        if value is not None and not math.isfinite(value):
            raise BadInputError(f"field 'value' must be a finite number, got {rec['value']!r}",
                                where)
        first[item] = n
        items[item] = RawItem(
            title=as_text(rec.get("title"), where, "title"),
            brand=as_text(rec.get("brand"), where, "brand"),
            categories=as_categories(rec.get("categories"), where, sep="|"),
            description=as_text(rec.get("description"), where, "description"),
            value=value,
        )
    return items
