"""The bad-input corpus (tests/bad_inputs.py) through the real ``python -m flows.prepare`` command line."""

from __future__ import annotations

import logging
import re

import duckdb
import pytest
from bad_inputs import CASES, Case

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_the_corpus_covers_twenty_kinds():
    assert len({case.kind for case in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input(case: Case, prefect_harness, tmp_path, capsys, caplog):
    from prefect.logging.configuration import setup_logging

    from flows.cli import main

    setup_logging(incremental=False)  # Prefect's console handler writes to this test's captured stderr
    folder = tmp_path / "data"
    folder.mkdir()
    args = case.build(folder)
    workspace = tmp_path / "ws"
    with caplog.at_level(logging.ERROR):
        status = main("prepare", None, [*args, "--workspace", str(workspace), "--no-data-docs"])
    out = capsys.readouterr()
    printed = out.out + out.err + "\n".join(r.getMessage() for r in caplog.records)
    # no traceback reaches the user, neither printed nor attached to a log record
    assert "Traceback" not in printed and not any(r.exc_info for r in caplog.records), printed[-3000:]
    if case.error is not None:
        assert status == 2, out.out[-2000:]
        (line,) = [x for x in out.err.splitlines() if x.startswith("error: ")]
        assert re.search(case.error, line), line
        return
    assert status == 0, out.err[-3000:]
    with duckdb.connect(str(workspace / "reclab.duckdb"), read_only=True) as con:
        for role, raw, kept, quarantined, dup, superseded in con.execute(
            "SELECT role, raw, kept, quarantined, exact_duplicates, superseded FROM ingest_counts"
        ).fetchall():
            assert raw == kept + quarantined + dup + superseded, role
        rejected = con.execute("SELECT line_no, column_name, reason FROM quarantine").fetchall()
        if case.quarantine is not None:
            ((line_no, column, reason),) = rejected
            assert (line_no, column) == case.quarantine[:2] and case.quarantine[2] in reason, rejected
            assert "quarantined" in out.out
        else:
            assert rejected == []
            assert all(con.execute(case.check).fetchone()), case.check
