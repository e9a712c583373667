"""Amazon review dumps, MovieLens and generic CSV / JSONL readers, on tiny hand-made fixtures.

Every expected sequence below is worked out by hand in the comments next to the fixture.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sgrec_cli.config import PrepareConfig
from sgrec_cli.data.formats import amazon, generic, movielens
from sgrec_cli.data.raw import RawItem
from sgrec_cli.data.step import detect_format
from sgrec_cli.data.step import run_step as prepare
from sgrec_cli.errors import BadInputError
from sgrec_cli.rundir import load_data


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode(encoding)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def _seqs(raw) -> list[tuple[str, list[str]]]:
    return [(s.user, s.items) for s in raw.sequences]


def _bad(reader, source: Path, cfg) -> BadInputError:
    with pytest.raises(BadInputError) as e:
        reader.read(source, cfg)
    return e.value


# ----------------------------------------------------------------------------- Amazon 2014

def _review(user: str, item: str, t: int, rating: float = 5.0) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": t, "overall": rating,
                       "reviewText": "..."})


# Line-by-line; with min_rating=3 and kcore=2:
#   rating filter drops lines 15 and 16 (2); no metadata: X (line 9), empty title: E (line 12) (2);
#   duplicate (u1, A): line 6 (t=200) loses to line 1 (t=100) (1);
#   k-core: D has 1 user -> gone; then u3 has only C -> gone; then C has only u2 -> gone (3).
#   u1: B50 A100 G300; u2: G5 A10 B20; u4: G0 A2 B3; u5: B5 (line 13) A5 (line 14) G6.
REVIEWS_2014 = [
    _review("u1", "A", 100),     # 1
    _review("u2", "A", 10),      # 2
    _review("u1", "B", 50, 4),   # 3
    _review("u3", "C", 40),      # 4
    _review("u2", "B", 20),      # 5
    _review("u1", "A", 200, 3),  # 6 duplicate pair, later
    _review("u2", "C", 30),      # 7
    _review("u3", "D", 5),       # 8
    _review("u4", "X", 1),       # 9 no metadata
    _review("u4", "A", 2),       # 10
    _review("u4", "B", 3),       # 11
    _review("u5", "E", 1),       # 12 empty title
    _review("u5", "B", 5),       # 13 tie with line 14: file order
    _review("u5", "A", 5),       # 14
    _review("u5", "F", 0, 1),    # 15 below min rating
    _review("u6", "A", 9, 2),    # 16 below min rating
    _review("u1", "G", 300),     # 17
    _review("u2", "G", 5),       # 18
    _review("u4", "G", 0),       # 19
    _review("u5", "G", 6),       # 20
]
META_2014 = [
    "{'asin': 'A', 'title': 'Toy A', 'price': 3.5, 'brand': 'BrandA', "
    "'categories': [['Toys', 'Dolls'], ['Toys', 'Games']], 'description': 'A doll', "
    "'related': {'also_bought': ['B']}, 'salesRank': {'Toys': 12}}",
    "{'asin': 'B', 'title': \"Kid's Toy B\"}",
    "{'asin': 'C', 'title': 'Toy C'}",
    "{'asin': 'D', 'title': 'Toy D'}",
    "{'asin': 'E', 'title': '  '}",
    "{'asin': 'F', 'title': 'Toy F'}",
    # a line in JSON syntax (null / true are not Python literals): the JSON fallback
    '{"asin": "G", "title": "Toy G", "price": null, "categories": [["Toys"]], "new": true}',
    "{'asin': 'Z', 'title': 'Never reviewed'}",
]
NOTES_2014 = {"interactions_below_min_rating": 2, "interactions_without_metadata": 2,
              "duplicate_interactions": 1, "interactions_removed_by_kcore": 3}


@pytest.fixture
def amazon2014(tmp_path: Path) -> Path:
    folder = tmp_path / "Toys2014"
    _write(folder / "reviews_Toy_5.json.gz", REVIEWS_2014)
    _write(folder / "meta_Toy.json.gz", META_2014)
    return folder


def test_amazon_2014_reader(amazon2014):
    cfg = PrepareConfig(source=str(amazon2014), kcore=2, min_rating=3)
    assert amazon.detect(amazon2014) and detect_format(amazon2014) == "amazon"
    raw = amazon.read(amazon2014, cfg)
    assert raw.name == "Toy" and raw.format == "amazon"
    assert _seqs(raw) == [("u1", ["B", "A", "G"]), ("u2", ["G", "A", "B"]),
                          ("u4", ["G", "A", "B"]), ("u5", ["B", "A", "G"])]
    assert raw.notes == NOTES_2014
    assert list(raw.items) == ["B", "A", "G"]  # only survivors, first appearance
    assert raw.items["A"] == RawItem(title="Toy A", brand="BrandA",
                                     categories=["Toys", "Dolls", "Games"],
                                     description="A doll", value=3.5)
    assert raw.items["B"] == RawItem(title="Kid's Toy B")
    assert raw.items["G"] == RawItem(title="Toy G", categories=["Toys"])
    assert raw.sequences[0].where.endswith("reviews_Toy_5.json.gz:1")
    # u4 first appears on line 9 (item X, dropped): its sequence points at its first kept line
    assert raw.sequences[2].where.endswith("reviews_Toy_5.json.gz:10")
    assert [p.name for p in raw.files] == ["reviews_Toy_5.json.gz", "meta_Toy.json.gz"]


def test_amazon_2014_prepare_end_to_end(amazon2014, tmp_path):
    res = prepare(tmp_path / "r", PrepareConfig(source=str(amazon2014), kcore=2, min_rating=3))
    data = load_data(tmp_path / "r")
    assert [it["id"] for it in data.items()] == ["B", "A", "G"]
    assert data.sequences() == [[0, 1, 2], [2, 1, 0], [2, 1, 0], [0, 1, 2]]
    assert res.stats["dropped"] == NOTES_2014
    assert (res.stats["users"], res.stats["items"], res.stats["interactions"]) == (4, 3, 12)
    assert res.manifest["config"]["format"] == "amazon"


def test_amazon_kcore_zero_and_no_rating_filter(amazon2014):
    raw = amazon.read(amazon2014, PrepareConfig(source=str(amazon2014), kcore=0))
    # Nothing filtered by rating: F (u5, t0) and u6's A stay; u3 keeps D5 C40.
    assert _seqs(raw) == [("u1", ["B", "A", "G"]), ("u2", ["G", "A", "B", "C"]),
                          ("u3", ["D", "C"]), ("u4", ["G", "A", "B"]),
                          ("u5", ["F", "B", "A", "G"]), ("u6", ["A"])]
    assert raw.notes == {"interactions_without_metadata": 2, "duplicate_interactions": 1}
    assert list(raw.items) == ["B", "A", "G", "C", "D", "F"]


def test_amazon_kcore_removing_everything_is_an_error(amazon2014):
    err = _bad(amazon, amazon2014, PrepareConfig(source=str(amazon2014), kcore=50))
    assert "no interactions left" in err.message and "50-core" in err.message


# ----------------------------------------------------------------------------- Amazon 2018

# Plain (not gzip) files; the reviews file may be the source. kcore=0.
#   u1: P2 t1, P3 t2, P1 t3; u2: three reviews at t=1 -> file order P3 P2 P1.
REVIEWS_2018 = [
    _review("u1", "P1", 3), _review("u2", "P3", 1), _review("u1", "P2", 1),
    _review("u2", "P2", 1), _review("u1", "P3", 2), _review("u2", "P1", 1),
]
META_2018 = [
    json.dumps({"asin": "P1", "title": "Drill", "brand": "Bosch", "category": ["Tools", "Power"],
                "description": ["Strong", "drill"], "price": "$1,299.99", "also_buy": []}),
    json.dumps({"asin": "P2", "title": "Saw", "price": ".a-box-inner{background-color:#fff}"}),
    json.dumps({"asin": "P3", "title": "Hammer", "price": "", "description": []}),
    json.dumps({"asin": "P1", "title": "Drill (repeated record)"}),
]


@pytest.fixture
def amazon2018(tmp_path: Path) -> Path:
    folder = tmp_path / "Tools2018"
    _write(folder / "Tools.json", REVIEWS_2018)
    _write(folder / "meta_Tools.json", META_2018)
    return folder


def test_amazon_2018_reader_from_reviews_file(amazon2018):
    source = amazon2018 / "Tools.json"
    assert amazon.detect(source) and amazon.detect(amazon2018)
    raw = amazon.read(source, PrepareConfig(source=str(source), kcore=0))
    assert _seqs(raw) == [("u1", ["P2", "P3", "P1"]), ("u2", ["P3", "P2", "P1"])]
    assert raw.notes == {"duplicate_metadata_records": 1}
    assert raw.items == {
        "P2": RawItem(title="Saw"),  # HTML in price -> no value
        "P3": RawItem(title="Hammer"),
        "P1": RawItem(title="Drill", brand="Bosch", categories=["Tools", "Power"],
                      description="Strong drill", value=1299.99),
    }


def test_amazon_2018_prepare_end_to_end(amazon2018, tmp_path):
    res = prepare(tmp_path / "r", PrepareConfig(source=str(amazon2018), kcore=0))
    data = load_data(tmp_path / "r")
    assert [it["id"] for it in data.items()] == ["P2", "P3", "P1"]
    assert data.sequences() == [[0, 1, 2], [1, 0, 2]]
    assert [(e.history, e.target) for e in data.split("test")] == [((0, 1), 2), ((1, 0), 2)]
    assert res.stats["dropped"] == {"duplicate_metadata_records": 1}


@pytest.mark.parametrize("line, message", [
    ('{"reviewerID": "u", "asin": "P1"}', "missing key 'unixReviewTime'"),
    ('{"reviewerID": "u", "asin": "P1", "unixReviewTime": "1 May"}',
     "unixReviewTime must be an integer"),
    ('{"reviewerID": 1.5, "asin": "P1", "unixReviewTime": 1}', "reviewerID must be a string"),
    ('{"asin": "P1", "unixReviewTime": 1}', "missing key 'reviewerID'"),
    ('["u", "P1", 1]', "expected a JSON object"),
    ('{"reviewerID": "u", "asin": "P1", "unixReviewTime": 1', "invalid JSON"),
])
def test_amazon_bad_reviews(amazon2018, line, message):
    path = _write(amazon2018 / "Tools.json", [REVIEWS_2018[0], line])
    err = _bad(amazon, amazon2018, PrepareConfig(source=str(amazon2018), kcore=0))
    assert message in err.message and err.where == f"{path}:2"


def test_amazon_min_rating_needs_overall(amazon2018):
    path = _write(amazon2018 / "Tools.json",
                  ['{"reviewerID": "u", "asin": "P1", "unixReviewTime": 1}'])
    err = _bad(amazon, amazon2018, PrepareConfig(source=str(amazon2018), kcore=0, min_rating=4))
    assert "missing key 'overall'" in err.message and err.where == f"{path}:1"


@pytest.mark.parametrize("line, message", [
    ('{"asin": "P2", "title": "Saw", "price": {"low": 1}}',
     "field 'price' must be a number, got an object"),
    ('{"title": "Saw"}', "missing key 'asin'"),
    ('{"asin": "P2", "title": ["ok", 3]}', "field 'title' must be a string"),
    ("{'asin': 'P2'}", "invalid JSON"),  # 2018 metadata is strict JSON
])
def test_amazon_2018_bad_meta(amazon2018, line, message):
    path = _write(amazon2018 / "meta_Tools.json", [META_2018[0], line])
    err = _bad(amazon, amazon2018, PrepareConfig(source=str(amazon2018), kcore=0))
    assert message in err.message and err.where == f"{path}:2"


@pytest.mark.parametrize("line, message", [
    ("{'asin': 'A', 'title': 'x', 'price': {'low': 1}}", "field 'price' must be a number"),
    ("{'asin': 'A', 'title': 'x', 'price': 'cheap'}", "field 'price' is not a number"),
    ("{'asin': 'A', 'title': __import__('os')}", "neither a Python dict literal nor JSON"),
    ("{'asin': 'A', 'categories': 3}", "field 'categories' must be a string or a list"),
])
def test_amazon_2014_bad_meta(amazon2014, line, message):
    path = _write(amazon2014 / "meta_Toy.json.gz", [META_2014[1], line])
    err = _bad(amazon, amazon2014, PrepareConfig(source=str(amazon2014), kcore=0))
    assert message in err.message and err.where == f"{path}:2"


def test_amazon_layout_errors(tmp_path, amazon2014):
    _write(amazon2014 / "reviews_Toy.json.gz", REVIEWS_2014[:1])  # full + 5-core: ambiguous
    err = _bad(amazon, amazon2014, PrepareConfig(source=str(amazon2014)))
    assert "several Amazon reviews files" in err.message
    lone = _write(tmp_path / "lone" / "reviews_Solo.json", REVIEWS_2014[:1])
    assert not amazon.detect(lone.parent) and not amazon.detect(lone)
    err = _bad(amazon, lone, PrepareConfig(source=str(lone)))
    assert "meta_Solo.json.gz" in err.message and err.where.endswith("meta_Solo.json.gz")
    err = _bad(amazon, amazon2014 / "meta_Toy.json.gz", PrepareConfig(source="x"))
    assert "this is the metadata file" in err.message


# ----------------------------------------------------------------------------- MovieLens

# u1: 20 (t100), 30 (t200), 10 (t300); u2: 20 and 30 tie at t50 (file order), 10 (t60), 40 (t70).
RATINGS_1M = ["1::10::5::300", "1::20::3::100", "1::30::4::200", "2::20::5::50",
              "2::10::1::60", "2::30::4::50", "2::40::4::70"]
MOVIES_1M = ["10::Caf\xe9 Society (1995)::Comedy|Drama",
             "20::Heat (1995)::Action|Crime|Thriller",
             "30::Toy Story (1995)::Animation|Children's|Comedy",
             "40::Odd::Title (1999)::Drama",
             "50::Unused (2000)::(no genres listed)"]


@pytest.fixture
def ml1m(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-1m"
    _write(folder / "ratings.dat", RATINGS_1M, "latin-1")
    _write(folder / "movies.dat", MOVIES_1M, "latin-1")
    return folder


def test_movielens_1m_reader(ml1m):
    assert movielens.detect(ml1m) and detect_format(ml1m) == "movielens"
    raw = movielens.read(ml1m, PrepareConfig(source=str(ml1m)))
    assert raw.name == "ml-1m" and raw.notes == {}
    assert _seqs(raw) == [("1", ["20", "30", "10"]), ("2", ["20", "30", "10", "40"])]
    assert raw.items["10"] == RawItem(title="Café Society (1995)", categories=["Comedy", "Drama"])
    assert raw.items["40"] == RawItem(title="Odd::Title (1999)", categories=["Drama"])
    assert raw.items["50"] == RawItem(title="Unused (2000)")
    raw = movielens.read(ml1m, PrepareConfig(source=str(ml1m), min_rating=3))
    assert _seqs(raw)[1] == ("2", ["20", "30", "40"])
    assert raw.notes == {"interactions_below_min_rating": 1}


def test_movielens_1m_prepare_end_to_end(ml1m, tmp_path):
    res = prepare(tmp_path / "r", PrepareConfig(source=str(ml1m / "ratings.dat")))
    data = load_data(tmp_path / "r")
    assert [it["id"] for it in data.items()] == ["10", "20", "30", "40"]  # movie-file order
    assert data.items()[0]["title"] == "Café Society (1995)"
    assert data.sequences() == [[1, 2, 0], [1, 2, 0, 3]]
    assert res.stats["dropped"] == {"items_without_interactions": 1}


# u1: 1 (t10), 3 (t20), 2 (t30); u2: 2 (t1), then 3 and 1 tie at t5 -> file order.
U_DATA = ["1\t2\t5\t30", "1\t1\t4\t10", "1\t3\t2\t20", "2\t3\t5\t5", "2\t1\t3\t5", "2\t2\t4\t1"]


def _flags(*on: int, n: int = 19) -> str:
    return "|".join("1" if i in on else "0" for i in range(n))


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    _write(folder / "u.data", U_DATA, "latin-1")
    _write(folder / "u.item", [
        f"1|Caf\xe9 Story (1995)|01-Jan-1995||http://x/1|{_flags(3, 4)}",
        f"2|unknown||||{_flags(0)}",
        f"3|Heat (1995)|01-Jan-1995||http://x/3|{_flags()}",
    ], "latin-1")
    return folder


def test_movielens_100k_reader(ml100k):
    assert movielens.detect(ml100k)
    raw = movielens.read(ml100k, PrepareConfig(source=str(ml100k)))
    assert _seqs(raw) == [("1", ["1", "3", "2"]), ("2", ["2", "3", "1"])]
    assert raw.items == {"1": RawItem("Café Story (1995)", categories=["Animation", "Children's"]),
                         "2": RawItem("unknown", categories=["unknown"]),
                         "3": RawItem("Heat (1995)")}
    assert raw.sequences[1].where.endswith("u.data:4")


def test_movielens_100k_u_genre_and_prepare(ml100k, tmp_path):
    _write(ml100k / "u.genre", ["None|0", "Fun|1", "Sad|2", ""])
    _write(ml100k / "u.item", ["1|A (1990)|||u|0|1|1", "2|B (1991)|||u|1|0|0",
                               "3|C (1992)|||u|0|0|1"], "latin-1")
    res = prepare(tmp_path / "r", PrepareConfig(source=str(ml100k), min_rating=3))
    data = load_data(tmp_path / "r")
    assert [(it["id"], it["categories"]) for it in data.items()] == [
        ("1", ["Fun", "Sad"]), ("2", ["None"]), ("3", ["Sad"])]
    # min_rating=3 drops u1's item 3 (rating 2): u1 = 1 2 is too short and is dropped.
    assert data.sequences() == [[1, 2, 0]]
    assert res.stats["dropped"] == {"interactions_below_min_rating": 1,
                                    "users_shorter_than_min_seq_len": 1}


@pytest.mark.parametrize("file, lines, line_no, message", [
    ("ratings.dat", ["1::10::5::300", "1::20::3"], 2, "expected 4 fields"),
    ("ratings.dat", ["1::10::5::300", "x::20::3::100"], 2, "user id must be an integer"),
    ("ratings.dat", ["1::1o::5::300"], 1, "movie id must be an integer"),
    ("ratings.dat", ["1::10::5::300", "1::20::3::1.5"], 2, "timestamp must be an integer"),
    ("ratings.dat", ["1::10::five::300"], 1, "rating must be a number"),
    ("movies.dat", ["10::Title only"], 1, "expected 3 fields"),
    ("movies.dat", ["10::A::Drama", "10::B::Drama"], 2, "duplicate movie id '10'"),
    ("movies.dat", ["ten::A::Drama"], 1, "movie id must be an integer"),
])
def test_movielens_1m_bad_input(ml1m, file, lines, line_no, message):
    path = _write(ml1m / file, lines, "latin-1")
    err = _bad(movielens, ml1m, PrepareConfig(source=str(ml1m)))
    assert message in err.message and err.where == f"{path}:{line_no}"


@pytest.mark.parametrize("file, lines, line_no, message", [
    ("u.data", ["1\t2\t5\t30", "1 2 5"], 2, "expected 4 fields"),
    ("u.item", [f"1|A|||u|{_flags()}", f"2|B|||u|{_flags(n=18)}"], 2, "expected 24 fields"),
    ("u.item", [f"1|A|||u|{_flags()}".replace("|0", "|x", 1)], 1, "genre flags must be 0 or 1"),
    ("u.genre", ["Fun|0", "Sad"], 2, "expected 2 fields"),
])
def test_movielens_100k_bad_input(ml100k, file, lines, line_no, message):
    path = _write(ml100k / file, lines, "latin-1")
    err = _bad(movielens, ml100k, PrepareConfig(source=str(ml100k)))
    assert message in err.message and err.where == f"{path}:{line_no}"


def test_movielens_unknown_movie_is_caught_by_canonicalize(ml1m, tmp_path):
    _write(ml1m / "ratings.dat", RATINGS_1M + ["2::99::5::80"], "latin-1")
    assert "99" in _seqs(movielens.read(ml1m, PrepareConfig(source=str(ml1m))))[1][1]
    with pytest.raises(BadInputError, match="item '99' .* is not in the item file"):
        prepare(tmp_path / "r", PrepareConfig(source=str(ml1m)))


def test_movielens_missing_movie_file(ml1m):
    (ml1m / "movies.dat").unlink()
    assert not movielens.detect(ml1m)
    err = _bad(movielens, ml1m, PrepareConfig(source=str(ml1m)))
    assert "missing required file" in err.message and err.where.endswith("movies.dat")


# ----------------------------------------------------------------------------- CSV / JSONL

# u1: i2 t10, i3 t20, i1 t30, i1 t40 (repeat kept); u2: i3 t5, then i2 and i1 tie at t10.
INTERACTIONS_CSV = ["user_id,item_id,timestamp,rating", "u1,i1,30,5", "u2,i2,10,4",
                    "u1,i2,10,2", "u1,i3,20,5", "u2,i1,10,5", "u2,i3,5,3", "u1,i1,40,4"]
ITEMS_CSV = ["item_id,title,brand,categories,description,value",
             'i1,"Widget, large",Acme,Tools|Hardware,"A ""big"" widget",12.5',
             "i2,Gadget,,Gadgets,,", "i3,Thing,B,,,$3", "i4,Unused,,,,"]


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mydata"
    _write(folder / "interactions.csv", INTERACTIONS_CSV)
    _write(folder / "items.csv", ITEMS_CSV)
    return folder


def test_csv_reader_with_items(csv_folder):
    assert generic.detect(csv_folder) and detect_format(csv_folder) == "csv"
    raw = generic.read(csv_folder, PrepareConfig(source=str(csv_folder)))
    assert raw.format == "csv" and raw.name == "mydata"
    assert _seqs(raw) == [("u1", ["i2", "i3", "i1", "i1"]), ("u2", ["i3", "i2", "i1"])]
    assert raw.items == {
        "i1": RawItem("Widget, large", "Acme", ["Tools", "Hardware"], 'A "big" widget', 12.5),
        "i2": RawItem("Gadget", categories=["Gadgets"]),
        "i3": RawItem("Thing", "B", value=3.0),
        "i4": RawItem("Unused"),
    }
    raw = generic.read(csv_folder, PrepareConfig(source=str(csv_folder), min_rating=3))
    assert _seqs(raw)[0] == ("u1", ["i3", "i1", "i1"])
    assert raw.notes == {"interactions_below_min_rating": 1}


def test_csv_prepare_end_to_end(csv_folder, tmp_path):
    res = prepare(tmp_path / "r", PrepareConfig(source=str(csv_folder), format="csv"))
    data = load_data(tmp_path / "r")
    assert [it["id"] for it in data.items()] == ["i1", "i2", "i3"]  # item-file order
    assert data.items()[0]["categories"] == ["Tools", "Hardware"]
    assert data.sequences() == [[1, 2, 0, 0], [2, 1, 0]]
    assert res.stats["repeat_interactions"] == 1
    assert res.stats["dropped"] == {"items_without_interactions": 1}
    assert res.manifest["config"]["format"] == "csv"


def test_csv_without_timestamp_keeps_file_order_and_no_items(tmp_path):
    path = _write(tmp_path / "clicks.csv", ["\ufeffitem_id,user_id,extra", "b,1,x", "a,1,y",
                                            "", "c,1,z", "a,2,w"])
    raw = generic.read(path, PrepareConfig(source=str(path)))
    assert raw.name == "clicks" and raw.items is None
    assert _seqs(raw) == [("1", ["b", "a", "c"]), ("2", ["a"])]


def test_jsonl_prepare_without_items(tmp_path):
    folder = tmp_path / "j"
    _write(folder / "interactions.jsonl", [
        '{"user_id": 7, "item_id": 1}', '{"user_id": "x", "item_id": 2}',
        '{"user_id": 7, "item_id": 3}', '{"user_id": "x", "item_id": 1}', "",
        '{"user_id": 7, "item_id": 2}', '{"user_id": "x", "item_id": 3}'])
    raw = generic.read(folder, PrepareConfig(source=str(folder)))
    assert raw.format == "jsonl" and raw.items is None
    assert _seqs(raw) == [("7", ["1", "3", "2"]), ("x", ["2", "1", "3"])]
    prepare(tmp_path / "r", PrepareConfig(source=str(folder)))
    data = load_data(tmp_path / "r")
    assert [it["id"] for it in data.items()] == ["1", "3", "2"]  # first appearance
    assert data.items()[0]["title"] == "" and data.sequences() == [[0, 1, 2], [2, 0, 1]]


def test_jsonl_with_items_option_and_timestamps(tmp_path):
    inter = _write(tmp_path / "events.jsonl", [
        '{"user_id": "a", "item_id": 1, "timestamp": 3.5, "rating": 5}',
        '{"user_id": "a", "item_id": "2", "timestamp": "1", "rating": 4}',
        '{"user_id": "a", "item_id": 3, "timestamp": 2, "rating": 1}'])
    items = _write(tmp_path / "meta" / "my_items.jsonl", [
        '{"item_id": 1, "title": "One", "categories": ["A", "B"], "value": 2}',
        '{"item_id": "2", "categories": "C|D", "brand": null}',
        '{"item_id": 3, "description": ["multi", "part"], "value": "4.25"}'])
    cfg = PrepareConfig(source=str(inter), items=str(items))
    raw = generic.read(inter, cfg)
    assert _seqs(raw) == [("a", ["2", "3", "1"])]
    assert raw.items == {"1": RawItem("One", categories=["A", "B"], value=2.0),
                         "2": RawItem(categories=["C", "D"]),
                         "3": RawItem(description="multi part", value=4.25)}
    assert raw.items_where == str(items)
    res = prepare(tmp_path / "r", cfg)
    assert load_data(tmp_path / "r").sequences() == [[1, 2, 0]]
    assert res.manifest["config"]["format"] == "jsonl"


def test_generic_forced_format_and_layout_errors(tmp_path, csv_folder):
    odd = _write(tmp_path / "data.txt", ["user_id,item_id", "u,a"])
    assert not generic.detect(odd)
    assert _seqs(generic.read(odd, PrepareConfig(source=str(odd), format="csv"))) == [
        ("u", ["a"])]
    err = _bad(generic, odd, PrepareConfig(source=str(odd)))
    assert "cannot tell CSV from JSONL" in err.message
    _write(csv_folder / "interactions.jsonl", ['{"user_id": "u", "item_id": "i1"}'])
    err = _bad(generic, csv_folder, PrepareConfig(source=str(csv_folder)))
    assert "both interactions.csv and interactions.jsonl" in err.message
    raw = generic.read(csv_folder, PrepareConfig(source=str(csv_folder), format="jsonl"))
    assert raw.format == "jsonl" and _seqs(raw) == [("u", ["i1"])]
    _write(csv_folder / "items.jsonl", ['{"item_id": "i1"}'])
    err = _bad(generic, csv_folder, PrepareConfig(source=str(csv_folder), format="csv"))
    assert "both items.csv and items.jsonl" in err.message
    err = _bad(generic, tmp_path / "empty_dir_is_not_there", PrepareConfig(source="x"))
    assert "no interactions.csv or interactions.jsonl" in err.message


@pytest.mark.parametrize("lines, line_no, message", [
    (["user_id,timestamp", "u1,5"], 1, "missing required column(s) item_id"),
    (["user_id,item_id,timestamp", "u1,i1,5", "u1,i2,yesterday"], 3,
     "timestamp must be a number, got 'yesterday'"),
    (["user_id,item_id,timestamp", "u1,i1,"], 2, "timestamp must be a number, got ''"),
    (["user_id,item_id,rating", "u1,i1,5", "", "u1,i2,good"], 4, "rating must be a number"),
    (["user_id,item_id", "u1,i1,extra"], 2, "expected 2 fields"),
    (["user_id,item_id", ",i1"], 2, "user_id is empty"),
    (["user_id,item_id,user_id", "u1,i1,u2"], 1, "duplicate column 'user_id'"),
    (["user_id,item_id", 'u1,"i1'], 2, "invalid CSV"),
])
def test_csv_bad_interactions(tmp_path, lines, line_no, message):
    path = _write(tmp_path / "interactions.csv", lines)
    err = _bad(generic, path, PrepareConfig(source=str(path)))
    assert message in err.message and err.where == f"{path}:{line_no}"


@pytest.mark.parametrize("lines, line_no, message", [
    (['{"user_id": "u", "item_id": 1}', '{"item_id": 2}'], 2, "missing key 'user_id'"),
    (['{"user_id": "u", "item_id": 1, "timestamp": 1}', '{"user_id": "u", "item_id": 2}'], 2,
     "missing key 'timestamp'"),
    (['{"user_id": "u", "item_id": 1, "timestamp": true}'], 1, "timestamp must be a number"),
    (['{"user_id": "u", "item_id": 1, "rating": "NaN"}'], 1, "must be a finite number"),
    (['{"user_id": "u", "item_id": [1]}'], 1, "item_id must be a string or an integer"),
    (['{"user_id": "u", "item_id": 1}', "[1, 2]"], 2, "expected a JSON object"),
])
def test_jsonl_bad_interactions(tmp_path, lines, line_no, message):
    path = _write(tmp_path / "interactions.jsonl", lines)
    err = _bad(generic, path, PrepareConfig(source=str(path)))
    assert message in err.message and err.where == f"{path}:{line_no}"


@pytest.mark.parametrize("name, lines, line_no, message", [
    ("items.csv", ["item_id,title", "i1,A", "i2,B", "i1,C"], 4,
     "duplicate item_id 'i1' (first on line 2)"),
    ("items.csv", ["title", "A"], 1, "missing required column(s) item_id"),
    ("items.csv", ["item_id,value", "i1,cheap"], 2, "field 'value' is not a number"),
    ("items.jsonl", ['{"item_id": "i1", "categories": {"a": 1}}'], 1,
     "field 'categories' must be a string or a list"),
    ("items.jsonl", ['{"item_id": "i1"}', '{"item_id": "i1"}'], 2, "duplicate item_id"),
])
def test_generic_bad_items(csv_folder, name, lines, line_no, message):
    (csv_folder / "items.csv").unlink()
    path = _write(csv_folder / name, lines)
    err = _bad(generic, csv_folder, PrepareConfig(source=str(csv_folder)))
    assert message in err.message and err.where == f"{path}:{line_no}"


def test_generic_other_errors(tmp_path, csv_folder):
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"user_id,item_id\nu1,Caf\xe9\n")
    err = _bad(generic, bad, PrepareConfig(source=str(bad)))
    assert "not valid UTF-8" in err.message and err.where == f"{bad}:2"
    err = _bad(generic, csv_folder, PrepareConfig(source=str(csv_folder), items="nope.csv"))
    assert "missing required file" in err.message and err.where == "nope.csv"
    path = _write(tmp_path / "nr.csv", ["user_id,item_id", "u,i"])
    err = _bad(generic, path, PrepareConfig(source=str(path), min_rating=3))
    assert "--min-rating needs a 'rating' column" in err.message and err.where == f"{path}:2"
    empty = _write(tmp_path / "empty.jsonl", [""])
    assert "no interactions" in _bad(generic, empty, PrepareConfig(source=str(empty))).message
