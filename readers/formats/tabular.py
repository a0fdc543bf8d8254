"""Any CSV/TSV or Parquet file of interactions, its columns named by a mapping (``--map``: canonical field to
input column), its rating scale declared (``--rating-scale``, default 1-5) and the cells that mean "absent"
(``--na-values``, in every table); optionally a table of items
(``--items``, columns by ``--items-map``: id, title, description, brand, categories, genres, price) and one of
users (``--users``, ``--users-map``: id, age, gender, occupation, zip code), each CSV or Parquet. Item text
reaches the language models' item profiles and the cold-item protocol; categories and genres LightFM's item
features, as the Amazon and MovieLens readers' metadata do."""

from __future__ import annotations

import re
from pathlib import Path

from readers.errors import InputError, Reject
from readers.fields import (
    Parser,
    csv_fields,
    header_columns,
    joined,
    json_object,
    parquet_columns,
    price,
    require_columns,
    to_id,
    to_rating,
    to_text,
    to_timestamp,
)
from readers.schema import INTERACTIONS, ITEMS, USERS
from readers.spec import ColumnMapping, DatasetSpec, ItemMapping, UserMapping

NAME = "tabular"
RATING_SCALE = (1.0, 5.0)
ROLES = (INTERACTIONS, ITEMS, USERS)
FOLDER_HINT = None  # one file, never a folder
# a header this wide without the mapped id columns is a user × item matrix, not one row per rating
MATRIX_COLUMNS = 10


def detect(path: Path) -> bool:
    return not path.is_dir() and re.search(r"\.(csv|tsv|parquet)(\.gz)?$", path.name.lower()) is not None


def files(path: Path) -> dict[str, Path]:
    if path.is_dir():
        raise InputError(f"{path} is a folder; tabular input must be one CSV or Parquet file")
    return {INTERACTIONS: path}


def layout(spec: DatasetSpec, role: str) -> str:
    return "parquet" if spec.files[role].name.lower().endswith(".parquet") else "csv"


def mapping_of(spec: DatasetSpec, role: str):
    """The role's column mapping: the one given, or the canonical names."""
    if role == ITEMS:
        return spec.items_mapping or ItemMapping()
    if role == USERS:
        return spec.users_mapping or UserMapping()
    return spec.mapping or ColumnMapping()


def require(available: list[str], mapping, role: str, source: Path) -> dict[str, str]:
    """The columns read (canonical field -> column), or an error naming what is missing and how to say so."""
    wanted = mapping.wanted(available)
    missing = {field: column for field, column in wanted.items() if column not in available}
    if not missing:
        return wanted
    flag = mapping.FLAG
    ids = {"user_id", "item_id"} & set(missing)
    if role == INTERACTIONS and ids and len(available) >= MATRIX_COLUMNS:
        raise InputError(
            f"{source}: no {' or '.join(sorted(missing[f] for f in ids))} column among {len(available)} columns "
            f"({available[:4]} ...): this looks like a user × item matrix, and reclab reads one row per rating. "
            "Reshape it first, e.g. with pandas: df.melt(id_vars=[<the user column>], var_name='item_id', "
            "value_name='rating'), then drop the rows holding the missing-value marker; or, if it is one row per "
            f"rating, name its columns with {flag} user_id=<column>,item_id=<column>"
        )

    def hints(missing: dict[str, str]) -> str:
        out = []
        for field in missing:
            if field == "timestamp":
                out.append(
                    f"If the file has no timestamps, declare it with {flag} timestamp= (the temporal protocol then "
                    f"cannot run: split with --protocols kfold random cold_items); if another column holds them, "
                    f"{flag} timestamp=<column>"
                )
            elif field in mapping.OPTIONAL_IF_ABSENT or field in ("review_text", "summary"):
                out.append(
                    f"{field.capitalize()}: name the column that holds it ({flag} {field}=<column>) or leave it out"
                )
            else:
                out.append(f"{field.capitalize()}: name the column that holds it, {flag} {field}=<column>")
        return "; ".join(out)

    require_columns(available, wanted, source, hints)
    return wanted


def parser(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    source, scale = spec.files[role], spec.rating_scale
    mapping = mapping_of(spec, role)
    if layout(spec, role) == "csv":
        columns = header_columns(header, spec.delimiter, source)
        read = require(columns, mapping, role, source)

        def decode(raw: bytes) -> dict:
            return csv_fields(raw, columns, spec.delimiter, source)

    else:
        read = require(parquet_columns(source), mapping, role, source)
        decode = json_object
    if spec.na_values:  # cells that mean "absent" (--na-values), as pandas' na_values
        absent, parse = set(spec.na_values), decode

        def decode(raw: bytes) -> dict:
            return {k: None if isinstance(v, str) and v in absent else v for k, v in parse(raw).items()}

    def value(fields: dict, field: str):
        return fields.get(read[field]) if field in read else None

    def interaction(raw: bytes) -> dict:
        fields = decode(raw)
        ts, text, summary = (read.get(f) for f in ("timestamp", "review_text", "summary"))
        return {
            "user_id": to_id(fields.get(read["user_id"]), read["user_id"]),
            "item_id": to_id(fields.get(read["item_id"]), read["item_id"]),
            "rating": to_rating(fields.get(read["rating"]), read["rating"], scale),
            "timestamp": to_timestamp(fields.get(ts), ts, now) if ts else None,
            "review_text": to_text(fields.get(text), text) if text else None,
            "summary": to_text(fields.get(summary), summary) if summary else None,
        }

    def item(raw: bytes) -> dict:
        fields = decode(raw)
        return {
            "item_id": to_id(fields.get(read["item_id"]), read["item_id"]),
            **{f: _text(value(fields, f), read.get(f)) for f in ("title", "description", "brand")},
            "category": _joined(value(fields, "category"), read.get("category")),
            "genres": _joined(value(fields, "genres"), read.get("genres")),
            "price": price(_number(value(fields, "price"))),
        }

    def user(raw: bytes) -> dict:
        fields = decode(raw)
        return {
            "user_id": to_id(fields.get(read["user_id"]), read["user_id"]),
            "age": _age(value(fields, "age"), read.get("age")),
            **{f: _text(value(fields, f), read.get(f)) for f in ("gender", "occupation", "zip_code")},
        }

    return {INTERACTIONS: interaction, ITEMS: item, USERS: user}[role]


def _text(value: object, column: str | None) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a zip code or brand Parquet stored as a number
    text = to_text(value, column or "")
    return text if text and text.strip() else None  # kept as written, as the other readers keep text


def _joined(value: object, column: str | None) -> str | None:
    """Categories as text (``a|b``, kept) or a list (Parquet: joined with '|')."""
    if isinstance(value, str):
        return "|".join(p.strip() for p in value.split("|") if p.strip()) or None
    return joined(value, column or "")


def _number(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _age(value: object, column: str | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise Reject(f"{column} {value!r} is not a whole number", column or "age")
