"""Parse one raw record into a canonical row, or reject it with a reason naming the column.

Every parser is a function ``bytes -> dict`` built by :func:`parser_for` for one (format, role); the
dict's keys are exactly ``readers.schema.COLUMNS[role]``. A record that cannot become a trustworthy row
raises :class:`Reject`; the ingest stage quarantines it with that reason, so nothing is silently dropped.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from readers.schema import INTERACTIONS, ITEMS, TAGS, USERS
from readers.spec import ColumnMapping, DatasetSpec, InputError

# Earliest plausible interaction: 1990-01-01 UTC (MovieLens starts 1995, Amazon reviews 1996).
MIN_TIMESTAMP = 631_152_000
MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: never part of an id
# The 19 genre flags of MovieLens 100K's u.item, in file order (from the GroupLens README / u.genre).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

Parser = Callable[[bytes], dict]


class Reject(Exception):
    """A record that cannot become a canonical row; ``column`` names the field at fault, if one is."""

    def __init__(self, reason: str, column: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.column = column


# --- field coercions -------------------------------------------------------------------------------


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise Reject(f"not valid {encoding} text (bad byte at offset {err.start})") from None


def to_id(value: object, column: str) -> str:
    if isinstance(value, bool) or value is None:
        raise Reject(f"missing {column}", column)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise Reject(f"{column} is a {type(value).__name__}, expected text", column)
    value = value.strip()
    if not value:
        raise Reject(f"missing {column}", column)
    if len(value) > MAX_ID_LENGTH:
        raise Reject(f"{column} is {len(value)} characters long (limit {MAX_ID_LENGTH})", column)
    control = _CONTROL.search(value)
    if control is not None:
        raise Reject(f"{column} contains the control character U+{ord(control.group()):04X}", column)
    return value


def to_rating(value: object, column: str, scale: tuple[float, float]) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Reject(f"missing {column}", column)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Reject(f"{column} is a {type(value).__name__}, expected a number", column)
    try:
        rating = float(value)
    except ValueError:
        raise Reject(f"{column} {value!r} is not a number", column) from None
    if not math.isfinite(rating):
        raise Reject(f"{column} is {rating}", column)
    lo, hi = scale
    if not lo <= rating <= hi:
        raise Reject(f"{column} {rating:g} is outside the declared scale [{lo:g}, {hi:g}]", column)
    return rating


def to_timestamp(value: object, column: str, now: int) -> int:
    """Unix seconds from an integer/float (seconds) or an ISO-8601 date string, within plausible bounds."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Reject(f"missing {column}", column)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Reject(f"{column} is a {type(value).__name__}, expected a time", column)
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise Reject(f"{column} {value!r} is neither Unix seconds nor an ISO date", column) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    if not math.isfinite(seconds):
        raise Reject(f"{column} is {seconds}", column)
    if not MIN_TIMESTAMP <= seconds <= now + 86_400:
        raise Reject(f"{column} {value!r} is not a plausible time (before 1990 or in the future)", column)
    return int(seconds)


def to_text(value: object, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise Reject(f"{column} is a {type(value).__name__}, expected text", column)


def _joined(value: object, column: str) -> str | None:
    """Lists (possibly nested, as in Amazon categories) become one '|'-joined string of unique parts."""
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, list):
        raise Reject(f"{column} is a {type(value).__name__}, expected text or a list", column)
    parts: list[str] = []
    stack = list(reversed(value))
    while stack:
        part = stack.pop()
        if isinstance(part, list):
            stack.extend(reversed(part))
        elif isinstance(part, str) and part.strip() and part.strip() not in parts:
            parts.append(part.strip())
    return "|".join(parts) or None


def _price(value: object) -> float | None:
    """Amazon prices are free text ('$12.99', '', '$5.00 - $10.00'); keep the first number or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.replace("$", "").replace(",", "").split("-")[0].strip()
        try:
            return float(text)
        except ValueError:
            return None
    return None


# --- record decoders -------------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict:
    text = _decode(raw, "utf-8")
    if not text.strip():
        raise Reject("blank line")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise Reject(f"invalid JSON: {err.msg} (character {err.pos})") from None
    if not isinstance(value, dict):
        raise Reject(f"a JSON {type(value).__name__}, expected an object")
    return value


def _json_or_python_object(raw: bytes) -> dict:
    """Amazon 2014 metadata lines are Python dict literals, 2018 ones JSON: accept both."""
    try:
        return _json_object(raw)
    except Reject as first:
        try:
            value = ast.literal_eval(_decode(raw, "utf-8"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise first from None
        if not isinstance(value, dict):
            raise first from None
        return value


def _split_fields(raw: bytes, sep: str, width: int, encoding: str) -> list[str]:
    text = _decode(raw, encoding)
    if not text.strip():
        raise Reject("blank line")
    fields = text.split(sep)
    if len(fields) != width:
        name = {"\t": "tab", "|": "'|'"}.get(sep, repr(sep))
        raise Reject(f"expected {width} {name}-separated fields, found {len(fields)}")
    return fields


def _csv_fields(raw: bytes, header: list[str], delimiter: str, source: Path) -> dict[str, str]:
    text = _decode(raw, "utf-8")
    if not text.strip():
        raise Reject("blank line")
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as err:
        raise Reject(f"malformed CSV record: {err}") from None
    fields = rows[0] if rows else []
    if len(fields) != len(header):
        raise Reject(f"expected {len(header)} fields as in the header of {source.name}, found {len(fields)}")
    return dict(zip(header, fields, strict=True))


def _header_columns(header: bytes | None, delimiter: str, source: Path) -> list[str]:
    if header is None:
        raise InputError(f"{source} is empty: expected a header line and data rows")
    try:
        names = next(csv.reader([header.decode("utf-8-sig")], delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, StopIteration) as err:
        raise InputError(f"{source} line 1: the header cannot be read ({err})") from None
    return [n.strip() for n in names]


def _require_columns(available: list[str], needed: dict[str, str | None], source: Path) -> None:
    missing = [col for col in needed.values() if col is not None and col not in available]
    if missing:
        raise InputError(f"{source}: required column(s) {missing} are missing; the header has {available}")


# --- parsers per format and role ---------------------------------------------------------------------


def layout_for(spec: DatasetSpec, role: str) -> str:
    """How the file of ``role`` splits into records (see :mod:`readers.records`)."""
    if spec.format in ("amazon", "movielens-100k"):
        return "lines"
    if spec.format == "tabular" and spec.files[role].name.lower().endswith(".parquet"):
        return "parquet"
    return "csv"


def parser_for(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    """Build the parser for the file of ``role`` in ``spec``.

    ``header`` is the file's CSV header (ignored for other layouts); ``now`` (Unix seconds) bounds
    plausible timestamps. Raises :class:`InputError` when the file's layout cannot work at all (a CSV
    missing a required column); each record that is wrong on its own raises :class:`Reject` when parsed.
    """
    source = spec.files[role]
    scale = spec.rating_scale

    if spec.format == "amazon":
        if role == INTERACTIONS:

            def amazon_review(raw: bytes) -> dict:
                obj = _json_object(raw)
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

            return amazon_review
        if role == ITEMS:

            def amazon_meta(raw: bytes) -> dict:
                obj = _json_or_python_object(raw)
                description = obj.get("description")
                if isinstance(description, list):
                    description = "\n".join(d for d in description if isinstance(d, str)) or None
                return {
                    "item_id": to_id(obj.get("asin"), "asin"),
                    "title": to_text(obj.get("title"), "title") or None,
                    "description": to_text(description, "description") or None,
                    "brand": to_text(obj.get("brand"), "brand") or None,
                    "category": _joined(obj.get("category", obj.get("categories")), "category"),
                    "genres": None,
                    "price": _price(obj.get("price")),
                }

            return amazon_meta

    if spec.format == "movielens-100k":
        if role == INTERACTIONS:

            def ml100k_rating(raw: bytes) -> dict:
                user, item, rating, ts = _split_fields(raw, "\t", 4, "utf-8")
                return {
                    "user_id": to_id(user, "user id"),
                    "item_id": to_id(item, "item id"),
                    "rating": to_rating(rating, "rating", scale),
                    "timestamp": to_timestamp(ts, "timestamp", now),
                    "review_text": None,
                    "summary": None,
                }

            return ml100k_rating
        if role == ITEMS:

            def ml100k_item(raw: bytes) -> dict:
                fields = _split_fields(raw, "|", 5 + len(ML100K_GENRES), "latin-1")
                flags = fields[5:]
                if any(f not in ("0", "1") for f in flags):
                    raise Reject("genre flags must be 0 or 1", "genres")
                return {
                    "item_id": to_id(fields[0], "movie id"),
                    "title": fields[1] or None,
                    "description": None,
                    "brand": None,
                    "category": None,
                    "genres": "|".join(g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1") or None,
                    "price": None,
                }

            return ml100k_item
        if role == USERS:

            def ml100k_user(raw: bytes) -> dict:
                user, age, gender, occupation, zip_code = _split_fields(raw, "|", 5, "latin-1")
                if not age.strip().isdigit():
                    raise Reject(f"age {age!r} is not a whole number", "age")
                return {
                    "user_id": to_id(user, "user id"),
                    "age": int(age),
                    "gender": gender or None,
                    "occupation": occupation or None,
                    "zip_code": zip_code or None,
                }

            return ml100k_user

    if spec.format == "movielens":
        columns = _header_columns(header, ",", source)
        needed = {
            INTERACTIONS: {"u": "userId", "i": "movieId", "r": "rating", "t": "timestamp"},
            ITEMS: {"i": "movieId", "title": "title", "g": "genres"},
            TAGS: {"u": "userId", "i": "movieId", "tag": "tag", "t": "timestamp"},
        }.get(role)
        if needed is not None:
            _require_columns(columns, needed, source)
        if role == INTERACTIONS:

            def ml_rating(raw: bytes) -> dict:
                row = _csv_fields(raw, columns, ",", source)
                return {
                    "user_id": to_id(row["userId"], "userId"),
                    "item_id": to_id(row["movieId"], "movieId"),
                    "rating": to_rating(row["rating"], "rating", scale),
                    "timestamp": to_timestamp(row["timestamp"], "timestamp", now),
                    "review_text": None,
                    "summary": None,
                }

            return ml_rating
        if role == ITEMS:

            def ml_movie(raw: bytes) -> dict:
                row = _csv_fields(raw, columns, ",", source)
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

            return ml_movie
        if role == TAGS:

            def ml_tag(raw: bytes) -> dict:
                row = _csv_fields(raw, columns, ",", source)
                if not row["tag"].strip():
                    raise Reject("missing tag", "tag")
                return {
                    "user_id": to_id(row["userId"], "userId"),
                    "item_id": to_id(row["movieId"], "movieId"),
                    "tag": row["tag"].strip(),
                    "timestamp": to_timestamp(row["timestamp"], "timestamp", now),
                }

            return ml_tag

    if spec.format == "tabular" and role == INTERACTIONS:
        mapping = spec.mapping or ColumnMapping()
        wanted = mapping.model_dump()
        if layout_for(spec, role) == "csv":
            columns = _header_columns(header, spec.delimiter, source)
            _require_columns(columns, wanted, source)

            def decode(raw: bytes) -> dict:
                return _csv_fields(raw, columns, spec.delimiter, source)

        else:
            _require_columns(_parquet_columns(source), wanted, source)
            decode = _json_object

        def tabular_row(raw: bytes) -> dict:
            row = decode(raw)
            ts, text, summary = mapping.timestamp, mapping.review_text, mapping.summary
            return {
                "user_id": to_id(row.get(mapping.user_id), mapping.user_id),
                "item_id": to_id(row.get(mapping.item_id), mapping.item_id),
                "rating": to_rating(row.get(mapping.rating), mapping.rating, scale),
                "timestamp": to_timestamp(row.get(ts), ts, now) if ts else None,
                "review_text": to_text(row.get(text), text) if text else None,
                "summary": to_text(row.get(summary), summary) if summary else None,
            }

        return tabular_row

    raise InputError(f"format {spec.format!r} has no {role} file; roles it reads: {roles_of(spec.format)}")


def roles_of(fmt: str) -> list[str]:
    return {
        "amazon": [INTERACTIONS, ITEMS],
        "movielens-100k": [INTERACTIONS, ITEMS, USERS],
        "movielens": [INTERACTIONS, ITEMS, TAGS],
        "tabular": [INTERACTIONS],
    }[fmt]


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as err:
        raise InputError(f"{path} is not a readable Parquet file: {err}") from None
