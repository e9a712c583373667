"""Amazon review dumps (McAuley et al., 2014 and 2018): reviews + ``meta_<Cat>`` JSON lines.

Files (gzip or plain, in one folder; SOURCE may be the folder or the reviews file):

* 2014: ``reviews_<Cat>[_5].json.gz`` (strict JSON per line) and ``meta_<Cat>.json.gz``, whose
  lines are Python dict literals (single quotes), read with ``ast.literal_eval`` (never ``eval``)
  and JSON as a fallback.
* 2018: ``<Cat>[_5].json.gz`` and ``meta_<Cat>.json.gz``, both strict JSON per line.

The version is told by the reviews file name (``reviews_`` prefix = 2014). Reviews need
``reviewerID``, ``asin``, ``unixReviewTime`` (integer) and, with ``--min-rating``, ``overall``.

Processing, in this order: keep reviews rated ``>= min_rating`` (when set); drop reviews of items
without metadata or with an empty title; keep the earliest of repeated (user, item) pairs;
iterative k-core (users and items with ``>= kcore`` interactions, until stable; 0 disables).
Each user's items are sorted by ``unixReviewTime`` (file order on ties); users keep their order
of first appearance in the reviews file, items their order of first appearance in the result.
What was dropped is counted in ``RawDataset.notes``.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

from ...errors import BadInputError, at
from ..io import as_categories, as_id, as_text, as_value, iter_json_lines, iter_lines
from ..raw import RawDataset, RawItem, RawSequence

NAME = "amazon"
SUFFIXES = (".json.gz", ".json")


def _strip_suffix(name: str) -> str | None:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _category(reviews_name: str) -> tuple[str, int] | None:
    """``reviews_Beauty_5.json.gz`` -> ("Beauty", 2014); ``Beauty.json`` -> ("Beauty", 2018)."""
    stem = _strip_suffix(reviews_name)
    if not stem or stem.startswith("meta_"):
        return None
    version = 2018
    if stem.startswith("reviews_"):
        stem, version = stem[len("reviews_"):], 2014
    if stem.endswith("_5"):
        stem = stem[: -len("_5")]
    return (stem, version) if stem else None


def _existing(folder: Path, stems: list[str]) -> list[Path]:
    return [folder / f"{s}{x}" for s in stems for x in SUFFIXES if (folder / f"{s}{x}").is_file()]


def _meta_files(folder: Path, cat: str) -> list[Path]:
    return _existing(folder, [f"meta_{cat}"])


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(reviews, meta) pairs found in a folder, one per reviews file."""
    pairs = []
    metas = sorted(p for p in folder.iterdir() if p.name.startswith("meta_") and p.is_file()
                   and _strip_suffix(p.name))
    for meta in metas:
        cat = _strip_suffix(meta.name)[len("meta_"):]  # type: ignore[index]
        if not cat:
            continue
        stems = [f"reviews_{cat}_5", f"reviews_{cat}", f"{cat}_5", cat]
        pairs.extend((reviews, meta) for reviews in _existing(folder, stems))
    return pairs


def _locate(source: Path) -> tuple[Path, Path, str, int]:
    """Return (reviews file, meta file, category, version) or raise a BadInputError."""
    if source.is_file():
        found = _category(source.name)
        if found is None:
            hint = " (this is the metadata file)" if source.name.startswith("meta_") else ""
            raise BadInputError(
                f"not an Amazon reviews file{hint}; pass reviews_<Cat>[_5].json.gz (2014), "
                "<Cat>[_5].json.gz (2018) or the folder holding it", source)
        cat, version = found
        metas = _meta_files(source.parent, cat)
        if not metas:
            raise BadInputError(
                f"missing required file (Amazon metadata meta_{cat}.json.gz next to the "
                "reviews file)", source.parent / f"meta_{cat}.json.gz")
        return source, _only(metas, f"metadata files for {cat!r}", source.parent), cat, version
    if not source.is_dir():
        raise BadInputError("expected an Amazon reviews file or a folder", source)
    pairs = _pairs(source)
    if not pairs:
        raise BadInputError("no Amazon reviews file with its meta_<Cat>.json(.gz) metadata "
                            "file (Amazon review dump format)", source)
    names = list(dict.fromkeys(r.name for r, _ in pairs))
    if len(names) > 1:
        raise BadInputError(f"several Amazon reviews files ({', '.join(names)}); pass the one "
                            "to use", source)
    reviews = pairs[0][0]
    cat, version = _category(reviews.name)  # type: ignore[misc]
    meta = _only(_meta_files(source, cat), f"metadata files for {cat!r}", source)
    return reviews, meta, cat, version


def _only(paths: list[Path], what: str, where: Path) -> Path:
    if len(paths) > 1:
        raise BadInputError(f"several {what} ({', '.join(p.name for p in paths)}); keep one",
                            where)
    return paths[0]


def detect(source: Path) -> bool:
    if source.is_file():
        found = _category(source.name)
        return found is not None and bool(_meta_files(source.parent, found[0]))
    return source.is_dir() and bool(_pairs(source))


def read(source: Path, cfg) -> RawDataset:
    reviews_path, meta_path, cat, version = _locate(source)
    min_rating = getattr(cfg, "min_rating", None)
    kcore = getattr(cfg, "kcore", 0) or 0
    notes: dict[str, int] = {}

    def note(key: str, n: int) -> None:
        if n:
            notes[key] = notes.get(key, 0) + n

    # Reviews: (user, item, time, file position, line), validated and rating-filtered.
    reviews: list[tuple[str, str, int, int, int]] = []
    user_first: dict[str, int] = {}
    below = 0
    for n, rec in iter_json_lines(reviews_path):
        where = at(reviews_path, n)
        if not isinstance(rec, dict):
            raise BadInputError("expected a JSON object (one review per line)", where)
        for key in ("reviewerID", "asin", "unixReviewTime"):
            if key not in rec:
                raise BadInputError(f"missing key {key!r}", where)
        user = as_id(rec["reviewerID"], where, "reviewerID")
        item = as_id(rec["asin"], where, "asin")
        ts = rec["unixReviewTime"]
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise BadInputError(
                f"unixReviewTime must be an integer, got {type(ts).__name__}: {ts!r}", where)
        user_first.setdefault(user, len(user_first))
        if min_rating is not None:
            rating = rec.get("overall")
            if rating is None:
                raise BadInputError("missing key 'overall' (needed by --min-rating)", where)
            if isinstance(rating, bool) or not isinstance(rating, (int, float)):
                raise BadInputError(f"overall must be a number, got {rating!r}", where)
            if rating < min_rating:
                below += 1
                continue
        reviews.append((user, item, ts, len(reviews), n))
    note("interactions_below_min_rating", below)

    wanted = {r[1] for r in reviews}
    meta, duplicates = _read_meta(meta_path, version, wanted)
    note("duplicate_metadata_records", duplicates)

    kept = [r for r in reviews if r[1] in meta and meta[r[1]].title]
    note("interactions_without_metadata", len(reviews) - len(kept))

    kept.sort(key=lambda r: (r[2], r[3]))  # time, then file order
    seen: set[tuple[str, str]] = set()
    unique = []
    for r in kept:
        if (r[0], r[1]) not in seen:
            seen.add((r[0], r[1]))
            unique.append(r)
    note("duplicate_interactions", len(kept) - len(unique))

    final = _kcore(unique, kcore)
    note("interactions_removed_by_kcore", len(unique) - len(final))
    if not final:
        raise BadInputError(
            f"no interactions left after filtering: {len(reviews)} kept by the rating filter, "
            f"{len(unique)} distinct (user, item) pairs with metadata, 0 after the "
            f"{kcore}-core filter (lower --kcore?)", reviews_path)

    by_user: dict[str, list[tuple[str, str, int, int, int]]] = {}
    for r in final:  # already in (time, file order)
        by_user.setdefault(r[0], []).append(r)
    sequences = []
    items: dict[str, RawItem] = {}
    for user in sorted(by_user, key=user_first.__getitem__):
        rows = by_user[user]
        first_line = min(r[4] for r in rows)
        sequences.append(RawSequence(user, [r[1] for r in rows], at(reviews_path, first_line)))
        for r in rows:
            if r[1] not in items:
                items[r[1]] = meta[r[1]]
    return RawDataset(name=cat, format=NAME, sequences=sequences, items=items,
                      files=[reviews_path, meta_path], items_where=str(meta_path), notes=notes)


def _kcore(rows: list, k: int) -> list:
    """Drop interactions of users or items with fewer than ``k`` of them, until stable."""
    if k <= 0:
        return rows
    while True:
        users: dict[str, int] = {}
        items: dict[str, int] = {}
        for r in rows:
            users[r[0]] = users.get(r[0], 0) + 1
            items[r[1]] = items.get(r[1], 0) + 1
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def _parse_2014_line(line: str, where: str) -> Any:
    """A 2014 metadata line: a Python dict literal (``ast.literal_eval``), else JSON."""
    try:
        return ast.literal_eval(line)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass  # a line in JSON syntax (true / false / null) is accepted too
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise BadInputError("invalid metadata line: neither a Python dict literal nor JSON",
                            where) from None


def _read_meta(path: Path, version: int, wanted: set[str]) -> tuple[dict[str, RawItem], int]:
    """Validate every metadata line; keep the items in ``wanted``. Returns (items, duplicates)."""
    items: dict[str, RawItem] = {}
    seen: set[str] = set()
    duplicates = 0
    if version == 2014:
        records = ((n, _parse_2014_line(line, at(path, n))) for n, line in iter_lines(path))
    else:
        records = iter_json_lines(path)
    for n, rec in records:
        where = at(path, n)
        if not isinstance(rec, dict):
            raise BadInputError("expected one object per line with an 'asin' key", where)
        if "asin" not in rec:
            raise BadInputError("missing key 'asin'", where)
        asin = as_id(rec["asin"], where, "asin")
        if asin in seen:  # the 2018 dumps repeat some records: keep the first
            duplicates += 1
            continue
        seen.add(asin)
        item = _item(rec, version, where)
        if asin in wanted:
            items[asin] = item
    return items, duplicates


def _item(rec: dict, version: int, where: str) -> RawItem:
    cats = rec["categories"] if "categories" in rec else rec.get("category")
    categories = list(dict.fromkeys(as_categories(cats, where)))
    price = rec.get("price")
    if version == 2018 and isinstance(price, str):
        try:
            value = as_value(price, where, "price")
        except BadInputError:  # 2018 prices hold ranges, HTML and other text: no price
            value = None
        if value is not None and not math.isfinite(value):
            value = None
    else:
        value = as_value(price, where, "price")
        if value is not None and not math.isfinite(value):
            raise BadInputError(f"field 'price' is not a finite number: {price!r}", where)
    return RawItem(
        title=as_text(rec.get("title"), where, "title"),
        brand=as_text(rec.get("brand"), where, "brand"),
        categories=categories,
        description=as_text(rec.get("description"), where, "description"),
        value=value,
    )
