"""MovieLens latest (GroupLens): ``ratings.csv`` (half stars, 0.5-5), ``movies.csv`` (title, genres) and
``tags.csv`` (free-text tags per user and movie), found in one folder (or ``ratings.csv`` given as the path)."""

from __future__ import annotations

from pathlib import Path

from readers.fields import Parser, Reject, csv_fields, header_columns, require_columns, to_id, to_rating, to_timestamp
from readers.formats import is_main_file, main_and_companions
from readers.schema import INTERACTIONS, ITEMS, TAGS
from readers.spec import DatasetSpec

NAME = "movielens"
RATING_SCALE = (0.5, 5.0)
ROLES = (INTERACTIONS, ITEMS, TAGS)
FOLDER_HINT = "ratings.csv (MovieLens latest)"
COLUMNS = {
    INTERACTIONS: ("userId", "movieId", "rating", "timestamp"),
    ITEMS: ("movieId", "title", "genres"),
    TAGS: ("userId", "movieId", "tag", "timestamp"),
}


def detect(path: Path) -> bool:
    return is_main_file(path, "ratings.csv")


def files(path: Path) -> dict[str, Path]:
    return main_and_companions(path, "ratings.csv", {ITEMS: "movies.csv", TAGS: "tags.csv"})


def layout(spec: DatasetSpec, role: str) -> str:
    return "csv"


def parser(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    source, scale = spec.files[role], spec.rating_scale
    columns = header_columns(header, ",", source)
    require_columns(columns, dict(enumerate(COLUMNS[role])), source)

    def rating(raw: bytes) -> dict:
        row = csv_fields(raw, columns, ",", source)
        return {
            "user_id": to_id(row["userId"], "userId"),
            "item_id": to_id(row["movieId"], "movieId"),
            "rating": to_rating(row["rating"], "rating", scale),
            "timestamp": to_timestamp(row["timestamp"], "timestamp", now),
            "review_text": None,
            "summary": None,
        }

    def movie(raw: bytes) -> dict:
        row = csv_fields(raw, columns, ",", source)
        genres = row["genres"].strip()
        return {
            "item_id": to_id(row["movieId"], "movieId"),
            "title": row["title"] or None,
            "description": None,
            "brand": None,
            "category": None,
            "genres": None if genres in ("", "(no genres listed)") else genres,
            "price": None,
        }

    def tag(raw: bytes) -> dict:
        row = csv_fields(raw, columns, ",", source)
        if not row["tag"].strip():
            raise Reject("missing tag", "tag")
        return {
            "user_id": to_id(row["userId"], "userId"),
            "item_id": to_id(row["movieId"], "movieId"),
            "tag": row["tag"].strip(),
            "timestamp": to_timestamp(row["timestamp"], "timestamp", now),
        }

    return {INTERACTIONS: rating, ITEMS: movie, TAGS: tag}[role]
