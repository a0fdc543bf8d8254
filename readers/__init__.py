"""Pure readers: from dataset files to canonical records (no Prefect, no DuckDB)."""

from readers.parse import Reject, parser_for
from readers.records import Record, iter_records
from readers.spec import DEFAULT_DATASET, ColumnMapping, DatasetSpec, InputError, resolve_dataset

__all__ = [
    "DEFAULT_DATASET",
    "ColumnMapping",
    "DatasetSpec",
    "InputError",
    "Record",
    "Reject",
    "iter_records",
    "parser_for",
    "resolve_dataset",
]
