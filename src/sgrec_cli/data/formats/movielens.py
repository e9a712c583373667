"""MovieLens 1M (``ratings.dat`` + ``movies.dat``) and 100K (``u.data`` + ``u.item``).

SOURCE is the folder (``ml-1m/``, ``ml-100k/``) or its ratings file. The files are Latin-1.

* 1M: ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``; ``movies.dat``
  ``MovieID::Title::Genres`` with ``|``-separated genres.
* 100K: ``u.data`` ``user item rating timestamp`` (tab-separated); ``u.item``
  ``id|title|release date|video release date|IMDb URL|flag...`` with one 0/1 flag per genre;
  genre names from ``u.genre`` (``name|index``) when present, else the standard 19.

Genres become categories; the title keeps its year, e.g. ``Toy Story (1995)``. Ids are integers
(kept as decimal strings). ``--min-rating`` keeps ratings at least that. Each user's items are
sorted by timestamp (file order on ties); users keep their order of first appearance.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BadInputError, at
from ..io import iter_lines, require_file
from ..raw import RawDataset, RawItem, timed_sequences

NAME = "movielens"
ENCODING = "latin-1"
# (ratings file, movies file, ratings separator)
LAYOUTS = (("ratings.dat", "movies.dat", "::"), ("u.data", "u.item", "\t"))
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRES = "(no genres listed)"


def _layout(source: Path) -> tuple[Path, Path, str] | None:
    if source.is_file():
        for ratings, movies, sep in LAYOUTS:
            if source.name == ratings:
                return source, source.with_name(movies), sep
        return None
    if source.is_dir():
        for ratings, movies, sep in LAYOUTS:
            if (source / ratings).is_file():
                return source / ratings, source / movies, sep
    return None


def detect(source: Path) -> bool:
    found = _layout(source)
    return found is not None and found[1].is_file()


def _int(value: str, where: str, field: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise BadInputError(f"{field} must be an integer, got {value!r}", where) from None


def _float(value: str, where: str, field: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise BadInputError(f"{field} must be a number, got {value!r}", where) from None


def read(source: Path, cfg) -> RawDataset:
    found = _layout(source)
    if found is None:
        raise BadInputError("no ratings.dat (MovieLens 1M) or u.data (MovieLens 100K)", source)
    ratings_path, movies_path, sep = found
    require_file(movies_path, f"MovieLens movie file {movies_path.name}")
    min_rating = getattr(cfg, "min_rating", None)

    rows: dict[str, list[tuple[int, int, str]]] = {}  # user -> (timestamp, position, movie)
    first_line: dict[str, int] = {}
    below = 0
    for n, line in iter_lines(ratings_path, ENCODING):
        where = at(ratings_path, n)
        parts = line.split(sep) if sep == "::" else line.split()
        if len(parts) != 4:
            layout = ("UserID::MovieID::Rating::Timestamp" if sep == "::"
                      else "user item rating timestamp (tab-separated)")
            raise BadInputError(f"expected 4 fields ({layout}), got {len(parts)}", where)
        user = str(_int(parts[0], where, "user id"))
        movie = str(_int(parts[1], where, "movie id"))
        rating = _float(parts[2], where, "rating")
        ts = _int(parts[3], where, "timestamp")
        first_line.setdefault(user, n)
        rows.setdefault(user, [])
        if min_rating is not None and rating < min_rating:
            below += 1
            continue
        rows[user].append((ts, n, movie))

    sequences = timed_sequences(rows, first_line, ratings_path)
    if sep == "::":
        items = _movies_1m(movies_path)
        files = [ratings_path, movies_path]
    else:
        genre_path = movies_path.with_name("u.genre")
        genres = _genres(genre_path) if genre_path.is_file() else list(GENRES_100K)
        items = _movies_100k(movies_path, genres)
        files = [ratings_path, movies_path] + ([genre_path] if genre_path.is_file() else [])
    name = ratings_path.parent.name or ("ml-1m" if sep == "::" else "ml-100k")
    notes = {"interactions_below_min_rating": below} if below else {}
    return RawDataset(name=name, format=NAME, sequences=sequences, items=items, files=files,
                      items_where=str(movies_path), notes=notes)


def _movies_1m(path: Path) -> dict[str, RawItem]:
    items: dict[str, RawItem] = {}
    for n, line in iter_lines(path, ENCODING):
        where = at(path, n)
        parts = line.split("::")
        if len(parts) < 3:
            raise BadInputError(f"expected 3 fields (MovieID::Title::Genres), got {len(parts)}",
                                where)
        # A title could itself hold '::': the id is the first field, the genres the last.
        movie = str(_int(parts[0], where, "movie id"))
        title = "::".join(parts[1:-1]).strip()
        genres = [] if parts[-1].strip() == NO_GENRES else [
            g.strip() for g in parts[-1].split("|") if g.strip()]
        if movie in items:
            raise BadInputError(f"duplicate movie id {movie!r}", where)
        items[movie] = RawItem(title=title, categories=genres)
    return items


def _genres(path: Path) -> list[str]:
    """``u.genre``: ``name|index`` lines with indices 0..n-1."""
    by_index: dict[int, str] = {}
    for n, line in iter_lines(path, ENCODING):
        where = at(path, n)
        parts = line.split("|")
        if len(parts) != 2:
            raise BadInputError(f"expected 2 fields (name|index), got {len(parts)}", where)
        index = _int(parts[1], where, "genre index")
        if index in by_index:
            raise BadInputError(f"duplicate genre index {index}", where)
        by_index[index] = parts[0].strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise BadInputError(f"genre indices must run 0..{len(by_index) - 1}, got "
                            f"{sorted(by_index)}", path)
    return [by_index[i] for i in range(len(by_index))]


def _movies_100k(path: Path, genres: list[str]) -> dict[str, RawItem]:
    expected = 5 + len(genres)
    items: dict[str, RawItem] = {}
    for n, line in iter_lines(path, ENCODING):
        where = at(path, n)
        parts = line.split("|")
        if len(parts) != expected:
            raise BadInputError(
                f"expected {expected} fields (id|title|release date|video release date|"
                f"IMDb URL|{len(genres)} genre flags), got {len(parts)}", where)
        movie = str(_int(parts[0], where, "movie id"))
        flags = parts[5:]
        bad = [f for f in flags if f.strip() not in ("0", "1")]
        if bad:
            raise BadInputError(f"genre flags must be 0 or 1, got {bad[0]!r}", where)
        if movie in items:
            raise BadInputError(f"duplicate movie id {movie!r}", where)
        items[movie] = RawItem(
            title=parts[1].strip(),
            categories=[g for g, f in zip(genres, flags, strict=True) if f.strip() == "1"],
        )
    return items
