"""Shared fixtures: tiny hand-made datasets written to tmp folders, and an ingested workspace."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NOW = 1_800_000_000  # a fixed "now" (2027-01-15) so timestamp plausibility is deterministic


def review(user: str, item: str, rating: float = 5.0, ts: int = 1_400_000_000, text: str = "fine", **extra) -> dict:
    """One Amazon 2014-style review record."""
    return {
        "reviewerID": user,
        "asin": item,
        "overall": rating,
        "unixReviewTime": ts,
        "reviewText": text,
        "summary": f"{user} on {item}",
        "reviewerName": user,
        **extra,
    }


def write_lines(path: Path, lines: list[str | bytes | dict], gz: bool = False) -> Path:
    """Write records (dicts become JSON) one per line; gzip when asked."""
    data = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x if isinstance(x, bytes) else x.encode()) + b"\n"
        for x in lines
    )
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def ingest(tmp_path):
    """Ingest a DatasetSpec into a fresh database; returns (connection, accounting)."""
    from tasks.ingest import IngestConfig, build_canonical_tables, load_raw_tables

    opened = []

    def run(spec, policy: str = "latest", db: Path | None = None):
        con = duckdb.connect(str(db or tmp_path / "ws.duckdb"))
        opened.append(con)
        load_raw_tables(con, spec)
        return con, build_canonical_tables(con, spec, IngestConfig(duplicate_policy=policy), now=NOW)

    yield run
    for con in opened:
        con.close()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect backend for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
