"""The prepare flow end to end under one Prefect test backend, and the command line's behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
from conftest import review, write_lines

from data_checks import ValidationFailed

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_prepare_default_dataset(prefect_harness, tmp_path):
    from flows.prepare import PrepareParams, prepare

    summary = prepare(PrepareParams(workspace=str(tmp_path / "ws")))
    t = summary["tables"]
    assert (t["interactions"], t["users_with_ratings"], t["items_with_ratings"]) == (10_261, 1_429, 900)
    assert summary["accounting"]["interactions"] == {
        "raw": 10_261,
        "kept": 10_261,
        "quarantined": 0,
        "exact_duplicates": 0,
        "superseded": 0,
    }
    assert summary["splits"]["random_s0"] == {"train": 8208, "validation": 1026, "test": 1027}
    assert summary["splits"]["temporal_s0"] == {"train": 10_261 - 2 * 1_429, "validation": 1_429, "test": 1_429}
    with duckdb.connect(summary["database"], read_only=True) as con:
        status, fingerprint, params = con.execute(
            "SELECT status, input_fingerprint, parameters FROM runs WHERE run_id = ?", [summary["run_id"]]
        ).fetchone()
    assert status == "completed" and len(fingerprint) == 64 and json.loads(params)["split"]["seed"] == 0
    assert (tmp_path / "ws" / "runs" / summary["run_id"] / "data_docs" / "index.html").exists()


def test_full_flow_runs_prepare_as_its_first_stage(prefect_harness, tmp_path):
    from flows.full import FullParams, full
    from flows.prepare import PrepareParams

    path = write_lines(
        tmp_path / "r.json", [review(f"u{i // 6}", f"i{i % 6}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(24)]
    )
    out = full(FullParams(prepare=PrepareParams(data=str(path), workspace=str(tmp_path / "ws"))))
    assert out["prepare"]["tables"]["interactions"] == 24


def test_failed_validation_stops_the_flow_and_marks_the_run(prefect_harness, tmp_path):
    from flows.prepare import PrepareParams, prepare

    path = write_lines(tmp_path / "r.json", [*[review(f"u{i}", "i") for i in range(5)], "{broken"])
    with pytest.raises(ValidationFailed, match=r"r.json: 1 of 6 records .* line 6: invalid JSON"):
        prepare(PrepareParams(data=str(path), workspace=str(tmp_path / "ws")))
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("module", ["flows.prepare", "flows.full"])
def test_cli_help(module):
    out = _cli(module, "--help")
    assert out.returncode == 0 and "--data" in out.stdout and "--duplicate-policy" in out.stdout


def test_cli_bad_path_is_one_clear_line(tmp_path):
    out = _cli("flows.prepare", "--data", str(tmp_path / "missing.json"))
    assert out.returncode == 2
    assert f"error: dataset path {tmp_path / 'missing.json'} does not exist" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_cli_prepare_prints_counts(tmp_path):
    path = write_lines(
        tmp_path / "r.json", [review(f"u{i // 6}", f"i{i % 6}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(24)]
    )
    out = _cli("flows.prepare", "--data", str(path), "--workspace", str(tmp_path / "ws"), "--no-data-docs")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "interactions          24        24            0          0           0" in out.stdout
    assert "random_s0" in out.stdout and "24 ratings from 4 users on 6 items" in out.stdout
