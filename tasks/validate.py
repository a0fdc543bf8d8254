"""Validate: the canonical tables against their GX suites, and the quarantine threshold."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
from prefect import task
from prefect.cache_policies import NONE

from data_checks import ValidationConfig
from readers import DatasetSpec
from readers.schema import COLUMNS, INTERACTIONS, ITEMS, ROLES
from tasks import tables
from tasks.store import Workspace, connect, ensure

FREE_TEXT = {"review_text", "summary", "description", "title"}  # VARCHAR columns of unbounded length


def validate_workspace(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    config: ValidationConfig,
    run_id: str,
    docs_dir: Path | None = None,
    now: int | None = None,
) -> dict[str, int]:
    """Check every canonical table; record each expectation's outcome in ``validations``; raise
    :class:`data_checks.ValidationFailed` on failure. Returns {table: rows checked}."""
    from data_checks.gate import enforce, item_coverage_problem, quarantine_problems, run_suites  # GX: slow import
    from data_checks.suites import TableFacts

    now = int(time.time()) if now is None else now
    accounting = {
        role: dict(zip(("raw", "kept", "quarantined"), counts, strict=True))
        for role, *counts in con.execute(f"SELECT role, raw, kept, quarantined FROM {tables.INGEST_COUNTS}").fetchall()
    }
    examples = {
        role: [(line, reason) for _, line, reason in rows]
        for role in accounting
        if (
            rows := con.execute(
                f"SELECT role, line_no, reason FROM {tables.QUARANTINE} WHERE role = ? ORDER BY line_no LIMIT 3", [role]
            ).fetchall()
        )
    }
    sources = {role: str(path) for role, path in spec.files.items()}
    problems = quarantine_problems(accounting, examples, sources, config.max_quarantine_fraction)

    frames, facts = {}, {}
    known_items = None
    if ITEMS in spec.files:
        known_items = [r[0] for r in con.execute(f"SELECT item_id FROM {tables.CANONICAL[ITEMS]}").fetchall()]
    for role in ROLES:
        table = tables.CANONICAL[role]
        # free text is checked for type and nulls only: its first characters say the same as the whole, and
        # keep the frames GX reads at a bounded size per row however long the reviews are
        cols = ", ".join(f'left("{c}", 64) AS "{c}"' if c in FREE_TEXT else f'"{c}"' for c in COLUMNS[role])
        frames[role] = con.execute(f"SELECT {cols} FROM {table}").df()
        has_ts = role != INTERACTIONS or bool(frames[role]["timestamp"].notna().any())
        facts[role] = TableFacts(
            expected_rows=accounting[role]["kept"] if role in accounting else None,
            rating_scale=spec.rating_scale,
            max_timestamp=now + 86_400,
            has_timestamps=has_ts,
            known_items=known_items if role == INTERACTIONS else None,
            min_item_coverage=config.min_item_coverage,
        )
    results = run_suites(frames, facts, docs_dir if config.data_docs else None)

    ensure(con, tables.VALIDATIONS)
    con.execute(f"DELETE FROM {tables.VALIDATIONS} WHERE run_id = ?", [run_id])
    con.executemany(
        f"INSERT INTO {tables.VALIDATIONS} VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            [run_id, r.table, r.expectation, r.column, r.success, r.observed, json.dumps(r.examples, default=str)]
            for r in results
        ],
    )
    explanations = {}
    if known_items is not None:
        explanations[(INTERACTIONS, "expect_column_values_to_be_in_set", "item_id")] = item_coverage_problem(
            frames[INTERACTIONS], known_items, config.min_item_coverage, sources[INTERACTIONS], sources[ITEMS]
        )
    enforce(results, problems, {role: sources.get(role, tables.CANONICAL[role]) for role in ROLES}, explanations)
    return {role: len(frame) for role, frame in frames.items()}


@task(cache_policy=NONE)
def validate_tables(
    workspace: Workspace, spec: DatasetSpec, config: ValidationConfig, run_id: str, docs_dir: Path
) -> dict[str, int]:
    """Run the GX suites and the quarantine gate; fail the flow with a clear message if either fails."""
    with connect(workspace.db) as con:
        return validate_workspace(con, spec, config, run_id, docs_dir)
