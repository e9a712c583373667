"""LETTER / LC-Rec format: ``X.inter.json`` (user -> item ids in time order) + ``X.item.json``."""

from __future__ import annotations

from pathlib import Path

from ...errors import BadInputError, at
from ..io import as_categories, as_id, as_text, as_value, find_one, load_json, require_file
from ..raw import RawDataset, RawItem, RawSequence

NAME = "letter"


def _inter_file(source: Path) -> Path | None:
    return find_one(source, ".inter.json")


def detect(source: Path) -> bool:
    return _inter_file(source) is not None


def read(source: Path, cfg) -> RawDataset:
    inter = _inter_file(source)
    if inter is None:
        raise BadInputError("no X.inter.json file (LETTER / LC-Rec format)", source)
    name = inter.name[: -len(".inter.json")]
    item_path = require_file(inter.with_name(f"{name}.item.json"), "LETTER item file X.item.json")

    seqs_raw = load_json(inter)
    if not isinstance(seqs_raw, dict):
        raise BadInputError("expected a JSON object {user id: [item ids]}", inter)
    sequences = []
    for user, items in seqs_raw.items():
        where = at(inter, record=user)
        if not isinstance(items, list):
            raise BadInputError(f"expected a list of item ids, got {type(items).__name__}", where)
        sequences.append(RawSequence(user, [as_id(i, where, "item id") for i in items], where))

    items_raw = load_json(item_path)
    if not isinstance(items_raw, dict):
        raise BadInputError("expected a JSON object {item id: {title, ...}}", item_path)
    items: dict[str, RawItem] = {}
    for item_id, rec in items_raw.items():
        where = at(item_path, record=item_id)
        if not isinstance(rec, dict):
            raise BadInputError(f"expected an object with title/brand/..., got "
                                f"{type(rec).__name__}", where)
        items[item_id.strip()] = RawItem(
            title=as_text(rec.get("title"), where, "title"),
            brand=as_text(rec.get("brand"), where, "brand"),
            categories=as_categories(rec.get("categories"), where),
            description=as_text(rec.get("description"), where, "description"),
            value=as_value(rec.get("price", rec.get("value")), where),
        )
    return RawDataset(name=name, format=NAME, sequences=sequences, items=items,
                      files=[inter, item_path], items_where=str(item_path))
