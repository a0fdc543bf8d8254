"""Pure readers: from dataset files to canonical records (no Prefect, no DuckDB).

``formats/`` holds one module per input format (registered in ``formats/__init__.py``), ``fields.py`` the
coercions they share, ``records.py`` how files split into records, ``schema.py`` the canonical columns and
``spec.py`` how a user's path becomes a dataset (files per role, format, rating scale).
"""

from readers.errors import InputError, Reject
from readers.formats import parser_for
from readers.records import Record, iter_records
from readers.spec import DEFAULT_DATASET, ColumnMapping, DatasetSpec, ItemMapping, UserMapping, resolve_dataset

__all__ = [
    "DEFAULT_DATASET",
    "ColumnMapping",
    "ItemMapping",
    "UserMapping",
    "DatasetSpec",
    "InputError",
    "Record",
    "Reject",
    "iter_records",
    "parser_for",
    "resolve_dataset",
]
