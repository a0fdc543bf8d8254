"""Amazon reviews, 2014 and 2018: JSON lines (plain or gzip) of reviews, and an optional metadata file
(``meta_*.json.gz`` beside them, or ``--items``; 2014's lines are Python dict literals, 2018's JSON)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from readers.errors import InputError
from readers.fields import (
    Parser,
    Reject,
    joined,
    json_object,
    json_or_python_object,
    price,
    to_id,
    to_rating,
    to_text,
    to_timestamp,
)
from readers.schema import INTERACTIONS, ITEMS
from readers.spec import DatasetSpec

NAME = "amazon"
RATING_SCALE = (1.0, 5.0)
ROLES = (INTERACTIONS, ITEMS)
FOLDER_HINT = "Amazon review JSON lines (*.json / *.json.gz)"
_JSON = re.compile(r"\.(json|jsonl)(\.gz)?$")


def detect(path: Path) -> bool:
    if path.is_dir():
        return _folder_files(path)[0] is not None
    return _JSON.search(path.name.lower()) is not None


def files(path: Path) -> dict[str, Path]:
    if not path.is_dir():
        return {INTERACTIONS: path}
    reviews, meta = _folder_files(path)
    if reviews is None:
        raise InputError(f"folder {path} holds no Amazon review file (*.json / *.json.gz)")
    return {INTERACTIONS: reviews} | ({ITEMS: meta} if meta is not None else {})


def _folder_files(folder: Path) -> tuple[Path | None, Path | None]:
    jsons = sorted(p for p in folder.iterdir() if _JSON.search(p.name))
    meta = [p for p in jsons if p.name.startswith("meta_")]
    reviews = [p for p in jsons if not p.name.startswith("meta_")]
    if len(reviews) > 1:
        raise InputError(
            f"folder {folder} holds several review files ({', '.join(p.name for p in reviews)}); "
            "pass the one to ingest as the path"
        )
    return (reviews[0] if reviews else None), (meta[0] if len(meta) == 1 else None)


def layout(spec: DatasetSpec, role: str) -> str:
    return "lines"


def parser(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    scale = spec.rating_scale

    def review(raw: bytes) -> dict:
        obj = json_object(raw)
        ts = obj.get("unixReviewTime")
        if ts is None and isinstance(obj.get("reviewTime"), str):
            try:
                ts = datetime.strptime(obj["reviewTime"], "%m %d, %Y").replace(tzinfo=UTC).timestamp()
            except ValueError:
                raise Reject(f"reviewTime {obj['reviewTime']!r} is not 'MM DD, YYYY'", "reviewTime") from None
        return {
            "user_id": to_id(obj.get("reviewerID"), "reviewerID"),
            "item_id": to_id(obj.get("asin"), "asin"),
            "rating": to_rating(obj.get("overall"), "overall", scale),
            "timestamp": to_timestamp(ts, "unixReviewTime", now),
            "review_text": to_text(obj.get("reviewText"), "reviewText"),
            "summary": to_text(obj.get("summary"), "summary"),
        }

    def meta(raw: bytes) -> dict:
        obj = json_or_python_object(raw)
        description = obj.get("description")
        if isinstance(description, list):
            description = "\n".join(d for d in description if isinstance(d, str)) or None
        return {
            "item_id": to_id(obj.get("asin"), "asin"),
            "title": to_text(obj.get("title"), "title") or None,
            "description": to_text(description, "description") or None,
            "brand": to_text(obj.get("brand"), "brand") or None,
            "category": joined(obj.get("category", obj.get("categories")), "category"),
            "genres": None,
            "price": price(obj.get("price")),
        }

    return review if role == INTERACTIONS else meta
