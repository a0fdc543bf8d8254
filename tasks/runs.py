"""Runs: one row per flow run with its parameters, code version, input fingerprint and outcome."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks import tables
from tasks.store import PROJECT_ROOT, connect, ensure


def code_version() -> str:
    """``<package version>+g<git sha>[.dirty]`` when run from a git checkout, else the package version."""
    try:
        base = version("reclab")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT, capture_output=True,
            text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return base
    if sha.returncode != 0:
        return base
    return f"{base}+g{sha.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@task(cache_policy=NONE)
def start_run(db: Path, run_id: str, flow: str, parameters: dict) -> None:
    """Record that a run started, with its parameters and code version."""
    with connect(db) as con:
        ensure(con, tables.RUNS)
        con.execute(f"DELETE FROM {tables.RUNS} WHERE run_id = ?", [run_id])
        con.execute(
            f"INSERT INTO {tables.RUNS} (run_id, flow, parameters, code_version, started_at, status) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            [run_id, flow, json.dumps(parameters, default=str), code_version(), _now()],
        )


def record_outcome(db: Path, run_id: str, status: str, summary: dict, fingerprint: str | None = None) -> None:
    """Mark a run finished (``completed`` or ``failed``) with its summary and input fingerprint."""
    with connect(db) as con:
        ensure(con, tables.RUNS)
        con.execute(
            f"UPDATE {tables.RUNS} SET status = ?, finished_at = ?, summary = ?, "
            "input_fingerprint = coalesce(?, input_fingerprint) WHERE run_id = ?",
            [status, _now(), json.dumps(summary, default=str), fingerprint, run_id],
        )


@task(cache_policy=NONE)
def finish_run(db: Path, run_id: str, summary: dict, fingerprint: str) -> None:
    """Record that a run completed, with its summary and input fingerprint."""
    record_outcome(db, run_id, "completed", summary, fingerprint)
