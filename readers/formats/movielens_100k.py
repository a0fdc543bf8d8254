"""MovieLens 100K (GroupLens): tab-separated ``u.data`` ratings, Latin-1 ``u.item`` with its 19 genre flags,
and ``u.user`` attributes, found in one folder (or ``u.data`` given as the path)."""

from __future__ import annotations

from pathlib import Path

from readers.fields import Parser, Reject, split_fields, to_id, to_rating, to_timestamp
from readers.formats import is_main_file, main_and_companions
from readers.schema import INTERACTIONS, ITEMS, USERS
from readers.spec import DatasetSpec

NAME = "movielens-100k"
RATING_SCALE = (1.0, 5.0)
ROLES = (INTERACTIONS, ITEMS, USERS)
FOLDER_HINT = "u.data (MovieLens 100K)"
# The 19 genre flags of u.item, in file order (from the GroupLens README / u.genre).
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip


def detect(path: Path) -> bool:
    return is_main_file(path, "u.data")


def files(path: Path) -> dict[str, Path]:
    return main_and_companions(path, "u.data", {ITEMS: "u.item", USERS: "u.user"})


def layout(spec: DatasetSpec, role: str) -> str:
    return "lines"


def parser(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    scale = spec.rating_scale

    def rating(raw: bytes) -> dict:
        user, item, value, ts = split_fields(raw, "\t", 4, "utf-8")
        return {
            "user_id": to_id(user, "user id"),
            "item_id": to_id(item, "item id"),
            "rating": to_rating(value, "rating", scale),
            "timestamp": to_timestamp(ts, "timestamp", now),
            "review_text": None,
            "summary": None,
        }

    def item(raw: bytes) -> dict:
        fields = split_fields(raw, "|", 5 + len(GENRES), "latin-1")
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise Reject("genre flags must be 0 or 1", "genres")
        return {
            "item_id": to_id(fields[0], "movie id"),
            "title": fields[1] or None,
            "description": None,
            "brand": None,
            "category": None,
            "genres": "|".join(g for g, f in zip(GENRES, flags, strict=True) if f == "1") or None,
            "price": None,
        }

    def user(raw: bytes) -> dict:
        user_id, age, gender, occupation, zip_code = split_fields(raw, "|", 5, "latin-1")
        if not age.strip().isdigit():
            raise Reject(f"age {age!r} is not a whole number", "age")
        return {
            "user_id": to_id(user_id, "user id"),
            "age": int(age),
            "gender": gender or None,
            "occupation": occupation or None,
            "zip_code": zip_code or None,
        }

    return {INTERACTIONS: rating, ITEMS: item, USERS: user}[role]
