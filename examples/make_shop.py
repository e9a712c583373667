"""Write examples/shop/: a small shop's own data in sgrec's CSV layout (data/README.md), the
kind of file a newcomer brings — 200 items in 8 categories and 300 customers.

The data is synthetic but shaped like a real log: each customer shops in one or two favourite
categories, mostly moving along a category's natural order (a starter item, then what goes with
it), with some popular items and some noise, so that a sequential model has something to learn
that most-popular does not. Deterministic: the same files every run.

    python examples/make_shop.py [--out examples/shop] [--users 300] [--seed 7]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

CATEGORIES = {
    "Tea": ("Leafline", ["sencha", "assam", "earl grey", "oolong", "chai", "rooibos", "matcha",
                         "jasmine", "darjeeling", "peppermint"], ["loose tea 100 g",
                                                                  "tea bags x40", "tin 250 g"]),
    "Coffee": ("Roastery", ["espresso", "colombia", "ethiopia", "decaf", "house blend",
                            "brazil", "kenya", "mocha", "sumatra", "guatemala"],
               ["beans 250 g", "ground 500 g", "capsules x20"]),
    "Kitchen": ("Boilwell", ["kettle", "teapot", "french press", "milk frother", "grinder",
                             "scale", "timer", "thermos", "pour-over cone", "mug"],
                ["steel", "glass", "ceramic"]),
    "Baking": ("Ovenbird", ["bread flour", "rye flour", "yeast", "sourdough starter",
                            "proofing basket", "loaf tin", "dough scraper", "bread knife",
                            "baking stone", "cooling rack"], ["small", "large", "pro"]),
    "Garden": ("Greenrow", ["tomato seeds", "basil seeds", "seed tray", "potting soil",
                            "watering can", "trowel", "gloves", "plant food", "raised bed",
                            "hose"], ["starter", "standard", "deluxe"]),
    "Outdoor": ("Trailhead", ["day pack", "water bottle", "rain jacket", "trekking poles",
                              "headlamp", "first aid kit", "map case", "camp stove",
                              "sleeping mat", "compass"], ["light", "classic", "expedition"]),
    "Books": ("Pageturn", ["crime novel", "cookbook", "travel guide", "poetry", "biography",
                           "history", "sci-fi novel", "children's book", "art book",
                           "gardening guide"], ["paperback", "hardcover", "box set"]),
    "Games": ("Meeple", ["card game", "board game", "puzzle 500", "puzzle 1000", "dice set",
                         "party game", "strategy game", "chess set", "expansion pack",
                         "game sleeves"], ["family", "classic", "collector"]),
}
ITEMS_PER_CATEGORY = 25


def make_items(rng: random.Random) -> list[dict]:
    """25 items per category, in the category's natural order (index within it)."""
    items = []
    for cat, (brand, nouns, variants) in CATEGORIES.items():
        picks = [(n, v) for n in nouns for v in variants]
        rng.shuffle(picks)
        for pos, (noun, variant) in enumerate(picks[:ITEMS_PER_CATEGORY]):
            items.append({
                "item_id": f"{cat[:3].upper()}{pos:03d}",
                "title": f"{brand} {noun} ({variant})",
                "brand": brand,
                "categories": f"Shop|{cat}",
                "description": f"{variant.capitalize()} {noun} from {brand}, for {cat.lower()} "
                               "lovers.",
                "value": f"{rng.uniform(4, 80):.2f}",
            })
    return items


def make_sequence(rng: random.Random, n_cats: int) -> list[int]:
    """One customer's item indices: walks along their favourite categories' order."""
    cats = rng.sample(range(len(CATEGORIES)), k=rng.choice([1, 1, 2]))
    length = rng.randint(5, 14)
    pos = {c: rng.randint(0, 8) for c in cats}
    seq: list[int] = []
    while len(seq) < length:
        if rng.random() < 0.25:  # a popular impulse buy: the first items of any category
            item = rng.randrange(n_cats) * ITEMS_PER_CATEGORY + rng.randint(0, 2)
        else:
            c = rng.choice(cats)
            pos[c] = min(ITEMS_PER_CATEGORY - 1, pos[c] + rng.choice([1, 1, 2, 2, 3, 4]))
            item = c * ITEMS_PER_CATEGORY + pos[c]
        if item not in seq:
            seq.append(item)
        elif all(p >= ITEMS_PER_CATEGORY - 1 for p in pos.values()):
            break
    return seq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "shop")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    items = make_items(rng)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "items.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(items[0]))
        w.writeheader()
        w.writerows(items)
    t0 = 1_700_000_000
    with open(args.out / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "rating"])
        for u in range(args.users):
            t = t0 + rng.randint(0, 86_400 * 60)
            for i in make_sequence(rng, len(CATEGORIES)):
                t += rng.randint(3_600, 86_400 * 7)
                w.writerow([f"c{u:04d}", items[i]["item_id"], t, rng.choice([3, 4, 4, 5, 5])])
    print(f"wrote {len(items)} items and {args.users} customers to {args.out}")


if __name__ == "__main__":
    main()
