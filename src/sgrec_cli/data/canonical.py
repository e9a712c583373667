"""Canonical dataset: contiguous item and user indices, checked sequences, item text."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from ..errors import BadInputError
from .raw import RawDataset, RawItem


@dataclass
class Dataset:
    """Items in index order (``items[i]['id']`` is the source id) and users' index sequences."""

    name: str
    items: list[dict]
    users: list[str]
    sequences: list[list[int]]
    dropped: dict[str, int]

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)


def canonicalize(raw: RawDataset, min_seq_len: int) -> Dataset:
    """Check a reader's output and map ids to indices.

    Refused (BadInputError naming the record): an empty sequence, a user listed twice, an item
    missing from the item file. Users with fewer than ``min_seq_len`` items are dropped and
    counted; so are items of the item file that no kept user interacted with.
    """
    dropped = dict(raw.notes)
    seen_users: set[str] = set()
    kept = []
    for seq in raw.sequences:
        if seq.user in seen_users:
            raise BadInputError(f"user {seq.user!r} appears more than once", seq.where)
        seen_users.add(seq.user)
        if not seq.items:
            raise BadInputError(f"user {seq.user!r} has an empty sequence", seq.where)
        if raw.items is not None:
            for item in seq.items:
                if item not in raw.items:
                    raise BadInputError(
                        f"item {item!r} (user {seq.user!r}) is not in the item file "
                        f"{raw.items_where}", seq.where)
        if len(seq.items) < min_seq_len:
            dropped["users_shorter_than_min_seq_len"] = (
                dropped.get("users_shorter_than_min_seq_len", 0) + 1)
            continue
        kept.append(seq)
    if not kept:
        raise BadInputError(f"no user has at least {min_seq_len} interactions",
                            raw.files[0] if raw.files else None)

    used = {i for s in kept for i in s.items}
    if raw.items is not None:
        order = [i for i in raw.items if i in used]  # item-file order
        unused = len(raw.items) - len(order)
        if unused:
            dropped["items_without_interactions"] = unused
    else:
        order = list(dict.fromkeys(i for s in kept for i in s.items))  # first appearance
    index = {item: n for n, item in enumerate(order)}
    items = [_item_record(n, item, (raw.items or {}).get(item)) for n, item in enumerate(order)]
    return Dataset(
        name=raw.name,
        items=items,
        users=[s.user for s in kept],
        sequences=[[index[i] for i in s.items] for s in kept],
        dropped=dropped,
    )


def _item_record(index: int, item_id: str, item: RawItem | None) -> dict:
    return {"index": index, "id": item_id, **asdict(item or RawItem())}


def dataset_stats(ds: Dataset) -> dict:
    lengths = [len(s) for s in ds.sequences]
    repeats = sum(len(s) - len(set(s)) for s in ds.sequences)

    def share(field: str) -> float:
        return round(sum(1 for it in ds.items if it[field]) / max(ds.n_items, 1), 4)

    return {
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "density": round(ds.n_interactions / max(ds.n_users * ds.n_items, 1), 6),
        "sequence_length": {
            "mean": round(statistics.fmean(lengths), 3),
            "median": statistics.median(lengths),
            "min": min(lengths),
            "max": max(lengths),
        },
        "repeat_interactions": repeats,
        "items_with": {
            "title": share("title"),
            "description": share("description"),
            "brand": share("brand"),
            "categories": share("categories"),
            "value": round(sum(1 for it in ds.items if it["value"] is not None)
                           / max(ds.n_items, 1), 4),
        },
        "dropped": ds.dropped,
    }
