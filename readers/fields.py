"""What every format's parsers are made of: field coercions (ids, ratings, times, text) and record decoders
(JSON objects, separated fields, CSV rows), each raising :class:`Reject` with a reason naming the column.

A parser (``readers.formats``) is a function ``bytes -> dict`` whose keys are exactly
``readers.schema.COLUMNS[role]``; a record that cannot become a trustworthy row raises :class:`Reject`, and
the ingest stage quarantines it with that reason, so nothing is silently dropped.
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

from readers.errors import InputError, MissingColumns, Reject

# Earliest plausible interaction: 1990-01-01 UTC (MovieLens starts 1995, Amazon reviews 1996).
MIN_TIMESTAMP = 631_152_000
MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: never part of an id
Parser = Callable[[bytes], dict]  # one raw record -> one canonical row (or Reject)


# --- field coercions -------------------------------------------------------------------------------


def decode(raw: bytes, encoding: str) -> str:
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


def joined(value: object, column: str) -> str | None:
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


def price(value: object) -> float | None:
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


def json_object(raw: bytes) -> dict:
    text = decode(raw, "utf-8")
    if not text.strip():
        raise Reject("blank line")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise Reject(f"invalid JSON: {err.msg} (character {err.pos})") from None
    if not isinstance(value, dict):
        raise Reject(f"a JSON {type(value).__name__}, expected an object")
    return value


def json_or_python_object(raw: bytes) -> dict:
    """Amazon 2014 metadata lines are Python dict literals, 2018 ones JSON: accept both."""
    try:
        return json_object(raw)
    except Reject as first:
        try:
            value = ast.literal_eval(decode(raw, "utf-8"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise first from None
        if not isinstance(value, dict):
            raise first from None
        return value


def split_fields(raw: bytes, sep: str, width: int, encoding: str) -> list[str]:
    text = decode(raw, encoding)
    if not text.strip():
        raise Reject("blank line")
    fields = text.split(sep)
    if len(fields) != width:
        name = {"\t": "tab", "|": "'|'"}.get(sep, repr(sep))
        raise Reject(f"expected {width} {name}-separated fields, found {len(fields)}")
    return fields


def csv_fields(raw: bytes, header: list[str], delimiter: str, source: Path) -> dict[str, str]:
    text = decode(raw, "utf-8")
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


def header_columns(header: bytes | None, delimiter: str, source: Path) -> list[str]:
    if header is None:
        raise InputError(f"{source} is empty: expected a header line and data rows")
    try:
        names = next(csv.reader([header.decode("utf-8-sig")], delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, StopIteration) as err:
        raise InputError(f"{source} line 1: the header cannot be read ({err})") from None
    return [n.strip() for n in names]


def require_columns(available: list[str], needed: dict[str, str | None], source: Path, hint=None) -> None:
    """Raise :class:`MissingColumns` naming the ``needed`` columns (field -> column) the header lacks;
    ``hint(missing)``, given the missing fields and their columns, adds what to do (". " before it)."""
    missing = {field: col for field, col in needed.items() if col is not None and col not in available}
    if missing:
        advice = f". {hint(missing)}" if hint else ""
        raise MissingColumns(
            f"{source}: required column(s) {list(missing.values())} are missing; the header has {available}{advice}"
        )


def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as err:
        raise InputError(f"{path} is not a readable Parquet file: {err}") from None
