"""Stream a source file as records (line number + the bytes as read), in constant memory.

Three layouts: ``lines`` (one record per physical line: JSON lines, GroupLens files), ``csv`` (one record
per CSV record, quote-aware so a quoted field may span lines; the header is not a record) and ``parquet``
(one record per row, kept as a JSON object). Files may be gzip-compressed; that is detected from their
first bytes, not their name.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from readers.errors import InputError

LAYOUTS = ("lines", "csv", "parquet")


@dataclass(frozen=True, slots=True)
class Record:
    """One input record: its 1-based line number in the file (row number for Parquet) and raw bytes."""

    line_no: int
    raw: bytes


def _open(path: Path) -> BinaryIO:
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a file")
    try:
        handle = path.open("rb")
    except OSError as err:
        raise InputError(f"cannot open {path}: {err.strerror}") from None
    magic = handle.read(2)
    handle.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


def _physical_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line without its end-of-line bytes); a last line without newline counts."""
    line_no = 0
    with _open(path) as handle:
        try:
            for line_no, line in enumerate(handle, start=1):  # noqa: B007
                yield line_no, line.rstrip(b"\r\n")
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise InputError(f"{path}: the gzip stream is truncated or corrupt after line {line_no} ({err})") from None


# A quoted CSV field may span lines, but a stray quote would otherwise swallow the rest of the file.
MAX_RECORD_LINES = 1_000


def _csv_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Group physical lines into CSV records: a record ends where its double quotes are balanced."""
    start, parts, quotes = 0, [], 0
    for line_no, line in _physical_lines(path):
        if not parts:
            start = line_no
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield start, b"\n".join(parts)
            parts, quotes = [], 0
        elif len(parts) > MAX_RECORD_LINES:
            raise InputError(
                f"{path} line {start}: a double quote opens a field that is still open {MAX_RECORD_LINES} lines "
                "later; fix the unbalanced quote (or quote the field) in that line"
            )
    if parts:  # an unbalanced quote ran to the end of the file: still a record, the parser rejects it
        yield start, b"\n".join(parts)


def read_header(path: Path) -> bytes | None:
    """The first CSV record of ``path`` (its header), or None for an empty file."""
    for _, raw in _csv_records(path):
        return raw
    return None


def _parquet_rows(path: Path, batch_size: int = 65536) -> Iterator[tuple[int, bytes]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path} is not a readable Parquet file: {err}") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for values in batch.to_pylist():
            row += 1
            yield row, json.dumps(values, default=str, ensure_ascii=False).encode("utf-8")


def iter_records(path: str | Path, layout: str) -> Iterator[Record]:
    """Yield every record of ``path`` in file order; memory stays bounded by one record.

    Parameters
    ----------
    path : file to read (plain or gzip).
    layout : ``"lines"``, ``"csv"`` (the header record is skipped; read it with :func:`read_header`)
        or ``"parquet"``.
    """
    path = Path(path)
    if layout == "lines":
        rows = _physical_lines(path)
    elif layout == "csv":
        rows = _csv_records(path)
        next(rows, None)  # the header
    elif layout == "parquet":
        rows = _parquet_rows(path)
    else:
        raise InputError(f"unknown record layout {layout!r}; known: {LAYOUTS}")
    for line_no, raw in rows:
        yield Record(line_no, raw)


def sha256(path: Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks): raw inputs, dataset downloads, bundle files."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
