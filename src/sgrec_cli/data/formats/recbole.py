"""RecBole atomic files: ``X.inter`` (+ optional ``X.item``; ``X.user`` is not used).

How RecBole ships its benchmark datasets: tab-separated text, UTF-8, whose first line names each
column with its type, ``name:type``, the type being ``token``, ``token_seq``, ``float`` or
``float_seq``; ``*_seq`` cells hold space-separated values. SOURCE is the dataset folder (holding
one ``*.inter`` file) or the ``.inter`` file itself.

``X.inter`` needs ``user_id:token`` and ``item_id:token``; ``timestamp:float`` and
``rating:float`` are optional (``--min-rating`` needs the rating), other columns are ignored.
With a timestamp each user's items are sorted by it (file order on ties), else file order is
kept; users keep their order of first appearance; repeated (user, item) pairs are kept; an empty
timestamp is an error.

``X.item`` (optional) needs ``item_id:token``. Item text comes from ``title`` (or
``movie_title``, ``name``), ``brand``, ``categories`` (or ``category``, ``genre``, ``genres``,
``class``: split on commas when the cell has any, else a ``token_seq`` cell on spaces as RecBole
does),
``description`` and ``price`` (or ``value``: the item value). Every item of ``X.inter`` must be
in it; items keep its order. Without ``X.item`` every item gets empty text. A file with none of
the category columns gets a warning naming the columns it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import BadInputError, at
from ..io import as_id, as_number, find_one, iter_lines
from ..raw import RawDataset, RawItem, timed_sequences

NAME = "recbole"
TYPES = ("token", "token_seq", "float", "float_seq")
TITLE = ("title", "movie_title", "name")
CATEGORIES = ("categories", "category", "genre", "genres", "class")
DESCRIPTION = ("description",)
VALUE = ("price", "value")


def _inter_file(source: Path) -> Path | None:
    return find_one(source, ".inter")


def detect(source: Path) -> bool:
    return _inter_file(source) is not None


def _header(line: str, path: Path, n: int) -> dict[str, tuple[int, str]]:
    """``name:type`` cells -> {name: (column, type)}."""
    columns: dict[str, tuple[int, str]] = {}
    for col, cell in enumerate(line.split("\t")):
        name, sep, kind = cell.strip().rpartition(":")
        if not sep or not name:
            raise BadInputError(f"header cell {cell.strip()!r} is not name:type (RecBole atomic "
                                "files name each column like user_id:token)", at(path, n))
        if kind not in TYPES:
            raise BadInputError(f"column {name!r} has unknown type {kind!r} (one of "
                                f"{', '.join(TYPES)})", at(path, n))
        if name in columns:
            raise BadInputError(f"duplicate column {name!r} in the header", at(path, n))
        columns[name] = (col, kind)
    return columns


def _rows(path: Path, required: tuple[str, ...]
          ) -> tuple[dict[str, tuple[int, str]], Iterator[tuple[int, list[str]]]]:
    """(header, iterator of (line, cells)); every row has the header's number of cells."""
    lines = iter_lines(path)
    try:
        n, first = next(lines)
    except StopIteration:
        raise BadInputError("empty file (a header line such as user_id:token item_id:token "
                            "is required)", path) from None
    header = _header(first.removeprefix("\ufeff"), path, n)
    for name in required:
        if name not in header:
            raise BadInputError(f"missing column {name}:token in the header (found: "
                                f"{', '.join(header)})", at(path, n))
        if header[name][1] != "token":
            raise BadInputError(f"column {name} must be of type token, not "
                                f"{header[name][1]}", at(path, n))

    def rows() -> Iterator[tuple[int, list[str]]]:
        for m, line in lines:
            cells = line.split("\t")
            if len(cells) != len(header):
                raise BadInputError(f"expected {len(header)} tab-separated fields as in the "
                                    f"header, got {len(cells)}", at(path, m))
            yield m, cells

    return header, rows()


def _float(cell: str, where: str, field: str) -> float | None:
    """A float cell; None when empty."""
    return as_number(cell, where, field) if cell.strip() else None


def read(source: Path, cfg) -> RawDataset:
    inter_path = _inter_file(source)
    if inter_path is None:
        raise BadInputError("no X.inter file (RecBole atomic files)", source)
    min_rating = getattr(cfg, "min_rating", None)
    header, rows = _rows(inter_path, ("user_id", "item_id"))
    col = {k: v[0] for k, v in header.items()}
    has_time, has_rating = "timestamp" in header, "rating" in header
    if min_rating is not None and not has_rating:
        raise BadInputError("--min-rating needs a rating:float column", inter_path)

    events: dict[str, list[tuple[float, int, str]]] = {}  # user -> (time, line, item)
    first_line: dict[str, int] = {}
    below = 0
    for n, cells in rows:
        where = at(inter_path, n)
        user = as_id(cells[col["user_id"]], where, "user_id")
        item = as_id(cells[col["item_id"]], where, "item_id")
        ts = 0.0
        if has_time:
            ts = _float(cells[col["timestamp"]], where, "timestamp")
            if ts is None:
                raise BadInputError("empty timestamp", where)
        first_line.setdefault(user, n)
        seq = events.setdefault(user, [])
        if min_rating is not None:
            rating = _float(cells[col["rating"]], where, "rating")
            if rating is None or rating < min_rating:
                below += 1
                continue
        seq.append((ts, n, item))
    if not events:
        raise BadInputError("no interactions in the file", inter_path)
    sequences = timed_sequences(events, first_line, inter_path)

    item_path = inter_path.with_suffix(".item")
    items, warnings = _read_items(item_path) if item_path.is_file() else (None, [])
    notes = {"interactions_below_min_rating": below} if below else {}
    return RawDataset(name=inter_path.stem, format=NAME, sequences=sequences, items=items,
                      files=[inter_path] + ([item_path] if items is not None else []),
                      items_where=str(item_path) if items is not None else "", notes=notes,
                      warnings=warnings)


def _read_items(path: Path) -> tuple[dict[str, RawItem], list[str]]:
    """The items of ``X.item``, and what could not be read from it, in words."""
    header, rows = _rows(path, ("item_id",))
    warnings = []
    if not any(n in header for n in CATEGORIES):
        others = [n for n in header if n not in ("item_id", *TITLE, "brand", *DESCRIPTION,
                                                 *VALUE)]
        warnings.append(f"{path.name}: no category column (looked for "
                        f"{', '.join(CATEGORIES)}), so the items have no categories"
                        + (f"; columns not read: {', '.join(others)}" if others else ""))

    def column(names: tuple[str, ...]) -> tuple[int, str] | None:
        return next((header[n] for n in names if n in header), None)

    title, categories = column(TITLE), column(CATEGORIES)
    brand, description, value = column(("brand",)), column(DESCRIPTION), column(VALUE)
    item_col = header["item_id"][0]
    items: dict[str, RawItem] = {}
    first: dict[str, int] = {}
    for n, cells in rows:
        where = at(path, n)
        item = as_id(cells[item_col], where, "item_id")
        if item in items:
            raise BadInputError(f"duplicate item_id {item!r} (first on line {first[item]})",
                                where)
        first[item] = n
        items[item] = RawItem(
            title=_cell(cells, title), brand=_cell(cells, brand),
            description=_cell(cells, description),
            categories=_categories(_cell(cells, categories), categories),
            value=_float(cells[value[0]], where, "price") if value and value[1] == "float"
            else None)
    return items, warnings


def _cell(cells: list[str], column: tuple[int, str] | None) -> str:
    return cells[column[0]].strip() if column else ""


def _categories(cell: str, column: tuple[int, str] | None) -> list[str]:
    if not cell:
        return []
    if "," in cell:
        parts = cell.split(",")
    elif column is not None and column[1] == "token_seq":
        parts = cell.split()
    else:
        parts = [cell]
    return [p.strip() for p in parts if p.strip()]
