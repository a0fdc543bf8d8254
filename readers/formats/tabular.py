"""Any CSV/TSV or Parquet file of interactions, its columns named by a mapping (``--map``: canonical field to
input column) and its rating scale declared (``--rating-scale``, default 1-5)."""

from __future__ import annotations

import re
from pathlib import Path

from readers.errors import InputError
from readers.fields import (
    Parser,
    csv_fields,
    header_columns,
    json_object,
    parquet_columns,
    require_columns,
    to_id,
    to_rating,
    to_text,
    to_timestamp,
)
from readers.schema import INTERACTIONS
from readers.spec import ColumnMapping, DatasetSpec

NAME = "tabular"
RATING_SCALE = (1.0, 5.0)
ROLES = (INTERACTIONS,)
FOLDER_HINT = None  # one file, never a folder


def detect(path: Path) -> bool:
    return not path.is_dir() and re.search(r"\.(csv|tsv|parquet)(\.gz)?$", path.name.lower()) is not None


def files(path: Path) -> dict[str, Path]:
    if path.is_dir():
        raise InputError(f"{path} is a folder; tabular input must be one CSV or Parquet file")
    return {INTERACTIONS: path}


def layout(spec: DatasetSpec, role: str) -> str:
    return "parquet" if spec.files[role].name.lower().endswith(".parquet") else "csv"


def parser(spec: DatasetSpec, role: str, header: bytes | None, now: int) -> Parser:
    source, scale = spec.files[role], spec.rating_scale
    mapping = spec.mapping or ColumnMapping()
    wanted = mapping.model_dump()
    if layout(spec, role) == "csv":
        columns = header_columns(header, spec.delimiter, source)
        require_columns(columns, wanted, source)

        def decode(raw: bytes) -> dict:
            return csv_fields(raw, columns, spec.delimiter, source)

    else:
        require_columns(parquet_columns(source), wanted, source)
        decode = json_object

    def row(raw: bytes) -> dict:
        fields = decode(raw)
        ts, text, summary = mapping.timestamp, mapping.review_text, mapping.summary
        return {
            "user_id": to_id(fields.get(mapping.user_id), mapping.user_id),
            "item_id": to_id(fields.get(mapping.item_id), mapping.item_id),
            "rating": to_rating(fields.get(mapping.rating), mapping.rating, scale),
            "timestamp": to_timestamp(fields.get(ts), ts, now) if ts else None,
            "review_text": to_text(fields.get(text), text) if text else None,
            "summary": to_text(fields.get(summary), summary) if summary else None,
        }

    return row
