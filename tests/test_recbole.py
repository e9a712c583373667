"""RecBole atomic files as an input format: the same interactions in RecBole files and in
another format give the same counts and byte-identical split files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sgrec_cli.cli import app

runner = CliRunner()
SPLIT_FILES = ("train.jsonl", "valid.jsonl", "test.jsonl", "sequences.jsonl")

# (user, item, rating, timestamp): ties on u1 and u3 keep file order; u4 is rated low
ROWS = [("u1", "i3", 5, 30), ("u2", "i1", 4, 10), ("u1", "i1", 5, 10), ("u1", "i2", 3, 20),
        ("u1", "i5", 4, 20), ("u2", "i2", 5, 15), ("u2", "i4", 2, 16), ("u3", "i4", 5, 1),
        ("u3", "i5", 5, 1), ("u3", "i1", 4, 2), ("u2", "i3", 5, 40), ("u4", "i2", 1, 5),
        ("u4", "i3", 1, 6), ("u4", "i4", 2, 7), ("u3", "i2", 4, 3), ("u1", "i4", 5, 50)]
ITEMS = {"i1": ("Relay kit 12V", "Supco", ["Industrial & Scientific", "Relays"], 12.5),
         "i2": ("Capacitor 10uF", "Supco", ["Industrial & Scientific", "Capacitors"], None),
         "i3": ("Lab goggles", "", ["Safety"], 3.0),
         "i4": ("Beaker, 250 ml", "Pyrex", [], 8.25),
         "i5": ("Pipette tips", "Eppendorf", ["Lab", "Pipettes"], None)}


def write_csv(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "interactions.csv").write_text(
        "user_id,item_id,rating,timestamp\n"
        + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS), encoding="utf-8")
    (folder / "items.csv").write_text(
        "item_id,title,brand,categories,value\n" + "".join(
            f'{i},"{title}",{brand},{"|".join(cats)},{"" if v is None else v}\n'
            for i, (title, brand, cats, v) in ITEMS.items()), encoding="utf-8")
    return folder


def write_recbole(folder: Path, name: str = "Toy") -> Path:
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ROWS), encoding="utf-8")
    (folder / f"{name}.item").write_text(
        "item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tprice:float\n"
        + "".join(f"{i}\t{title}\t{brand}\t{','.join(cats)}\t{'' if v is None else v}\n"
                  for i, (title, brand, cats, v) in ITEMS.items()), encoding="utf-8")
    (folder / f"{name}.user").write_text("user_id:token\tage:float\nu1\t30\n", encoding="utf-8")
    return folder


def prepare(source: Path, run: Path, *args: str) -> dict:
    res = runner.invoke(app, ["prepare", str(source), "--run", str(run), "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def same_data(a: Path, b: Path, files=(*SPLIT_FILES, "items.jsonl")) -> None:
    for name in files:
        assert (a / "data" / name).read_bytes() == (b / "data" / name).read_bytes(), name


@pytest.mark.parametrize("extra", [[], ["--min-rating", "3"]])
def test_recbole_gives_the_same_dataset_as_csv(tmp_path, extra):
    rb = prepare(write_recbole(tmp_path / "Toy"), tmp_path / "rb", *extra)  # auto-detected
    csv = prepare(write_csv(tmp_path / "csv"), tmp_path / "csv-run", *extra)
    for key in ("users", "items", "interactions", "split"):
        assert rb["stats"][key] == csv["stats"][key], key
    assert rb["dataset"]["fingerprint"] == csv["dataset"]["fingerprint"]
    same_data(tmp_path / "rb", tmp_path / "csv-run")
    m = json.loads((tmp_path / "rb" / "data" / "manifest.json").read_text())
    assert m["config"]["format"] == "recbole" and rb["dataset"]["name"] == "Toy"
    items = [json.loads(x) for x in (tmp_path / "rb" / "data" / "items.jsonl").open()]
    assert items[0]["categories"] == ["Industrial & Scientific", "Relays"]
    assert items[0]["value"] == 12.5 and items[1]["value"] is None
    seqs = [json.loads(x) for x in (tmp_path / "rb" / "data" / "sequences.jsonl").open()]
    ids = [it["id"] for it in items]
    # u1 by time, file order on the tie at 20: i1 i2 i5 i3 i4
    assert [ids[i] for i in seqs[0]["items"]] == ["i1", "i2", "i5", "i3", "i4"]


def test_recbole_file_as_source_and_without_item_file(tmp_path):
    folder = write_recbole(tmp_path / "Toy")
    (folder / "Toy.item").unlink()
    res = prepare(folder / "Toy.inter", tmp_path / "run", "--format", "recbole")
    assert res["stats"]["users"] == 4 and res["stats"]["items"] == 5
    items = [json.loads(x) for x in (tmp_path / "run" / "data" / "items.jsonl").open()]
    assert all(it["title"] == "" for it in items)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("user_id:token", "user_id", 1), "header cell 'user_id' is not name:type"),
    (lambda t: t.replace("rating:float", "rating:number", 1), "unknown type 'number'"),
    (lambda t: t.replace("user_id:token", "uid:token", 1), "missing column user_id:token"),
    (lambda t: t.replace("u2\ti1\t4\t10", "u2\ti1\t4", 1), "Toy.inter:3: expected 4"),
    (lambda t: t.replace("u2\ti1\t4\t10", "u2\ti1\t4\tsoon", 1),
     "Toy.inter:3: timestamp must be a number, got 'soon'"),
    (lambda t: t.replace("u2\ti1\t4\t10", "u2\ti9\t4\t10", 1), "item 'i9' (user 'u2') is not"),
])
def test_recbole_bad_input_is_one_line_naming_file_and_line(tmp_path, edit, message):
    folder = write_recbole(tmp_path / "Toy")
    inter = folder / "Toy.inter"
    inter.write_text(edit(inter.read_text()))
    res = runner.invoke(app, ["prepare", str(folder), "--run", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "data").exists()


def test_recbole_from_the_real_scientific_dataset(scientific, tmp_path):
    """Scientific (LETTER) written out as RecBole atomic files, time = position in the
    sequence, rows interleaved across users: the same counts and split files."""
    inter = json.loads((scientific / "Scientific.inter.json").read_text(encoding="utf-8"))
    items = json.loads((scientific / "Scientific.item.json").read_text(encoding="utf-8"))
    folder = tmp_path / "Scientific"
    folder.mkdir()
    rows = sorted(((t, u, i) for u, seq in inter.items() for t, i in enumerate(seq)),
                  key=lambda r: r[0])
    with open(folder / "Scientific.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{1_500_000_000 + t}\n" for t, u, i in rows)

    def cell(x) -> str:
        return " ".join(str(x or "").split())  # no tabs or newlines inside a cell

    with open(folder / "Scientific.item", "w", encoding="utf-8") as f:
        f.write("item_id:token\ttitle:token_seq\tbrand:token\n")
        f.writelines(f"{i}\t{cell(r.get('title'))}\t{cell(r.get('brand'))}\n"
                     for i, r in items.items())
    rb = prepare(folder, tmp_path / "rb")
    letter = prepare(scientific, tmp_path / "letter")
    for key in ("users", "items", "interactions", "sequence_length", "split"):
        assert rb["stats"][key] == letter["stats"][key], key
    assert rb["stats"]["users"] == 8317 and rb["stats"]["interactions"] == 58492
    same_data(tmp_path / "rb", tmp_path / "letter", SPLIT_FILES)
