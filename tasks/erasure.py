"""A user's data erased on request: ``python -m serve.registry forget USER_ID`` and the ``reclab-forget`` flow.

Erasure is the one documented exception to immutable raw data. In one transaction it deletes the user's rows
from every table that holds user ids (``tables.USER_ROWS``: canonical interactions, users and tags, split
assignments, training reviews, per-user evaluation values, the LM's predictions and vectors) and from the raw,
quarantine and duplicates tables, found through the provenance (file, line) of the user's canonical rows: the
lines collapsed into them, and quarantined lines that name the user (a JSON user field, or the first field of a
delimited line, as every catalogue format writes it). Example values that quote the id (data card, validation
examples) are replaced by ``[erased]``. Then it deletes the user's rows from the serving log (raw id and
pseudonym), removes what holds per-user state outside the tables (the fit store, the runs' working folders,
the encoder-state cache: all recomputed on the next run) and marks every published bundle whose users include
them (``erased.json`` beside its manifest). One row of ``erasures`` records when, the user's keyed pseudonym
(never the id: a later request or ingest can be recognised, the id cannot be read back) and the counts.

Aggregates (metrics, tests, differences, reports) are not personal rows and stay as computed; the next run
(``flows.train`` reads the erased splits; ``flows.prepare`` rebuilds them from the erased raw tables) trains
without the user, and the service stops answering from their history once a new champion is published.
The input files outside the workspace are the user's to erase too: a new workspace made from the same file
would ingest the user again.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import duckdb
import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from models.serving.pseudonym import pseudonym
from readers import InputError
from readers.schema import ROLES
from tasks import tables
from tasks.serving_log import SERVING_DB
from tasks.store import Workspace, connect, ensure, table_exists, utc_now

ERASED = "[erased]"
USER_FIELDS = ("reviewerID", "reviewer_id", "user_id", "userId", "userID")
PER_USER_FOLDERS = ("fits", "runs", "text_states")  # recomputed on the next run


@task(cache_policy=NONE)
def erase(workspace: Workspace, user_id: str) -> dict:
    """Erase ``user_id`` from ``workspace`` (:func:`forget_user`)."""
    return forget_user(workspace, user_id)


def forget_user(workspace: Workspace, user_id: str) -> dict:
    """Erase ``user_id`` from ``workspace``; what was removed, per table and place. An id with nothing to erase
    is a clear error (nothing is recorded)."""
    user_id = str(user_id)
    key = workspace.user_key()
    alias = pseudonym(user_id, key)
    with workspace.lock("forget"), connect(workspace.db) as con:
        earlier = _earlier(con, alias)
        con.begin()
        try:
            counts = _delete_rows(con, user_id)
            serving = _delete_served(workspace.root, user_id, alias)
            if not any(counts.values()) and not serving:
                when = f" (erased {earlier:%Y-%m-%d %H:%M} UTC)" if earlier else ""
                raise InputError(
                    f"user {user_id!r} has no rows in {workspace.root}{when}: nothing to erase; check the id "
                    "(as in the dataset: case and spaces count)"
                )
            erasure_id = uuid.uuid4().hex[:12]
            record = {
                "tables": {table: n for table, n in counts.items() if n},
                "serving_log": serving,
                "folders": _remove_folders(workspace.root),
                "bundles_marked": _mark_bundles(workspace.root, user_id, alias, erasure_id),
            }
            ensure(con, tables.ERASURES)
            con.execute(
                f"INSERT INTO {tables.ERASURES} VALUES (?, ?, ?, ?)", [erasure_id, utc_now(), alias, json.dumps(record)]
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return {"erasure_id": erasure_id, **record}


def _earlier(con: duckdb.DuckDBPyConnection, alias: str):
    if not table_exists(con, tables.ERASURES):
        return None
    row = con.execute(f"SELECT max(erased_at) FROM {tables.ERASURES} WHERE user_key = ?", [alias]).fetchone()
    return row[0]


def _delete_rows(con: duckdb.DuckDBPyConnection, user_id: str) -> dict[str, int]:
    """Delete the user's rows from every table (raw through provenance); rows deleted per table."""
    present = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_lines (role VARCHAR, source_file VARCHAR, line_no BIGINT)")
    for role in ROLES:  # the canonical rows' own lines, then the lines collapsed into them
        table = tables.CANONICAL[role]
        if table in present and table in tables.USER_ROWS:
            con.execute(
                f"INSERT INTO _erase_lines SELECT ?, source_file, line_no FROM {table} "
                f"WHERE {tables.USER_ROWS[table]} AND source_file IS NOT NULL",
                [role, user_id],
            )
    if tables.DUPLICATES in present:
        con.execute(f"""
            INSERT INTO _erase_lines SELECT d.role, d.source_file, d.line_no FROM {tables.DUPLICATES} d
            JOIN _erase_lines e ON d.role = e.role AND d.source_file = e.source_file AND d.kept_line_no = e.line_no""")
    if tables.QUARANTINE in present:
        con.execute(
            f"INSERT INTO _erase_lines SELECT role, source_file, line_no FROM {tables.QUARANTINE} "
            "WHERE regexp_matches(raw_content, ?)",
            [_names_user(user_id)],
        )
    counts: dict[str, int] = {}
    for role in ROLES:
        table = tables.RAW[role]
        if table in present:
            counts[table] = _delete(
                con,
                table,
                "(source_file, line_no) IN (SELECT (source_file, line_no) FROM _erase_lines WHERE role = ?)",
                [role],
            )
    for table in (tables.QUARANTINE, tables.DUPLICATES):
        if table in present:
            counts[table] = _delete(
                con,
                table,
                "(role, source_file, line_no) IN (SELECT (role, source_file, line_no) FROM _erase_lines)",
                [],
            )
    for table, condition in tables.USER_ROWS.items():
        if table in present:
            counts[table] = _delete(con, table, condition, [user_id])
    quoted = json.dumps(user_id)
    for table, column in ((tables.DATA_CARD, "card"), (tables.VALIDATIONS, "examples")):
        if table in present:
            counts[f"{table} (values)"] = con.execute(
                f'UPDATE {table} SET "{column}" = replace(CAST("{column}" AS VARCHAR), ?, ?) '
                f'WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                [quoted, json.dumps(ERASED), quoted],
            ).fetchone()[0]
    con.execute("DROP TABLE _erase_lines")
    return counts


def _delete(con: duckdb.DuckDBPyConnection, table: str, condition: str, parameters: list) -> int:
    return con.execute(f"DELETE FROM {table} WHERE {condition}", parameters).fetchone()[0]


def _names_user(user_id: str) -> str:
    """A regular expression for a raw line that names ``user_id``: a JSON user field, or a delimited line's
    first field (MovieLens: ratings, tags, users)."""
    value = re.escape(user_id)
    fields = "|".join(USER_FIELDS)
    return rf'"({fields})"\s*:\s*"?{value}"?\s*[,}}]|^{value}(,|::|\t|\|)'


def _delete_served(root: Path, user_id: str, alias: str) -> int:
    """Delete the user's requests from the serving log (it holds pseudonyms; raw ids where none was kept)."""
    db = root / SERVING_DB
    if not db.exists():
        return 0
    with connect(db, wait_s=30) as con:
        if not table_exists(con, tables.SERVING_LOG):
            return 0
        return _delete(con, tables.SERVING_LOG, "user_id IN (?, ?)", [user_id, alias])


def _remove_folders(root: Path) -> list[str]:
    """Remove the folders holding per-user state outside the tables (recomputed on the next run)."""
    removed = []
    for name in PER_USER_FOLDERS:
        if (root / name).exists():
            shutil.rmtree(root / name)
            removed.append(name)
    return removed


def _mark_bundles(root: Path, user_id: str, alias: str, erasure_id: str) -> list[str]:
    """Mark every published bundle whose users include the user; the versions marked."""
    from models.serving.bundle import MANIFEST
    from models.serving.published import ERASED_FILE, erasure_marks, registry_dir

    marked = []
    registry = registry_dir(root)
    for manifest in sorted(registry.glob(f"*/{MANIFEST}")) if registry.exists() else []:
        if _holds_user(manifest.parent, {user_id, alias}):
            entries = [*erasure_marks(manifest.parent), {"erasure_id": erasure_id, "erased_at": utc_now().isoformat()}]
            (manifest.parent / ERASED_FILE).write_text(json.dumps(entries, indent=1))
            marked.append(manifest.parent.name)
    return marked


def _holds_user(bundle: Path, ids: set[str]) -> bool:
    """Whether the bundle (or one of its components) was fitted on one of ``ids`` (its ``user_ids``)."""
    from models.serving.bundle import ARRAYS

    for arrays in bundle.rglob(ARRAYS):
        with np.load(arrays, allow_pickle=False) as npz:
            if "user_ids" in npz.files and ids & set(npz["user_ids"].astype(str).tolist()):
                return True
    return False


@task(cache_policy=NONE)
def erased_since_last_training(workspace: Workspace, run_id: str) -> int:
    """Users erased since the last completed training before run ``run_id`` started (ever, before the first):
    what the run record states, so that a reader knows whose data the previous models still hold."""
    with connect(workspace.db, read_only=True) as con:
        if not table_exists(con, tables.ERASURES):
            return 0
        (since,) = con.execute(
            f"SELECT max(started_at) FROM {tables.RUNS} WHERE flow = 'train' AND status = 'completed' AND run_id <> ?",
            [run_id],
        ).fetchone()
        query = f"SELECT count(DISTINCT user_key) FROM {tables.ERASURES}"
        return con.execute(query + (" WHERE erased_at > ?" if since else ""), [since] if since else []).fetchone()[0]
