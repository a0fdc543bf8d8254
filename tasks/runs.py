"""Runs: one row per flow run with its parameters, code version, input fingerprint and outcome."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from readers import DatasetSpec
from tasks import tables
from tasks.ingest import input_fingerprint
from tasks.store import PROJECT_ROOT, Workspace, connect, ensure, utc_now


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
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return base
    if sha.returncode != 0:
        return base
    return f"{base}+g{sha.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")


@task(cache_policy=NONE)
def start_run(workspace: Workspace, run_id: str, flow: str, parameters: dict) -> None:
    """Record that a run started, with its parameters and code version.

    Runs still marked ``running`` are marked ``interrupted``: the workspace lock (held by every flow) means
    none of them can still be going, so each was killed or crashed before it recorded an outcome."""
    with connect(workspace.db) as con:
        ensure(con, tables.RUNS)
        con.execute(
            f"UPDATE {tables.RUNS} SET status = 'interrupted', summary = ? WHERE status = 'running' AND run_id <> ?",
            [json.dumps({"error": "ended without recording an outcome (killed or crashed)"}), run_id],
        )
        con.execute(f"DELETE FROM {tables.RUNS} WHERE run_id = ?", [run_id])
        con.execute(
            f"INSERT INTO {tables.RUNS} (run_id, flow, parameters, code_version, started_at, status) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            [run_id, flow, json.dumps(parameters, default=str), code_version(), utc_now()],
        )


@task(cache_policy=NONE)
def record_inputs(workspace: Workspace, run_id: str, spec: DatasetSpec) -> str:
    """Record the sha256 fingerprint of the run's input files (as soon as they are read)."""
    with connect(workspace.db) as con:
        fingerprint = input_fingerprint(con, spec)
        con.execute(f"UPDATE {tables.RUNS} SET input_fingerprint = ? WHERE run_id = ?", [fingerprint, run_id])
    return fingerprint


def record_outcome(db: Path, run_id: str, status: str, summary: dict) -> None:
    """Mark a run finished (``completed`` or ``failed``) with its summary."""
    with connect(db) as con:
        ensure(con, tables.RUNS)
        con.execute(
            f"UPDATE {tables.RUNS} SET status = ?, finished_at = ?, summary = ? WHERE run_id = ?",
            [status, utc_now(), json.dumps(summary, default=str), run_id],
        )


@task(cache_policy=NONE)
def finish_run(workspace: Workspace, run_id: str, summary: dict) -> None:
    """Record that a run completed, with its summary."""
    record_outcome(workspace.db, run_id, "completed", summary)
