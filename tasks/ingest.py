"""Ingest: input files -> immutable raw tables -> canonical tables, quarantine and duplicate records.

The accounting identity holds for every role and is asserted: raw records = canonical rows + quarantined
+ exact duplicates collapsed + superseded (user, item) repeats.
"""

from __future__ import annotations

import hashlib
import time

import duckdb
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE

from data_checks import DataCardConfig
from models.progress import Progress
from readers import DatasetSpec, InputError, Reject, iter_records, parser_for
from readers.formats import layout_for
from readers.records import read_header, sha256
from readers.schema import COLUMNS, INTERACTIONS, ITEMS, KEYS, ORDER_BY, ROLES, USERS
from tasks import IngestConfig, tables
from tasks.logs import forward_to_run_logger
from tasks.store import Workspace, connect, ensure, utc_now

CHUNK = 50_000  # records per insert: bounds memory whatever the file size

_ARROW = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BLOB": pa.binary(),
}


def _arrow_schema(table: str) -> pa.Schema:
    return pa.schema([(name, _ARROW[dtype]) for name, dtype in tables.SCHEMAS[table].items()])


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict], schema: pa.Schema) -> None:
    if rows:
        batch = pa.Table.from_pylist(rows, schema=schema)  # noqa: F841 (read by DuckDB by name)
        con.execute(f"INSERT INTO {table} SELECT * FROM batch")


# --- raw layer ---------------------------------------------------------------------------------------


def load_raw_tables(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> dict[str, int]:
    """Copy every record of every file of ``spec`` into its ``raw_<role>`` table, once.

    A raw table is written once and never changed: if it already holds the same file (same sha256) it is
    reused; if it holds a different file, ingest stops rather than mix or overwrite inputs.
    Returns records per role.
    """
    ensure(con, tables.SOURCES)
    loaded = {}
    for role, path in spec.files.items():
        digest = sha256(path)
        previous = con.execute(f"SELECT path, sha256, records FROM {tables.SOURCES} WHERE role = ?", [role]).fetchone()
        if previous is not None:
            if previous[1] != digest:
                raise InputError(
                    f"this workspace already holds raw {role} from {previous[0]} (sha256 {previous[1][:12]}…), "
                    f"and {path} differs (sha256 {digest[:12]}…); raw tables are immutable: "
                    "use another --workspace for a different input"
                )
            loaded[role] = previous[2]
            continue
        raw_table = tables.RAW[role]
        layout = layout_for(spec, role)
        schema = _arrow_schema(raw_table)
        con.begin()
        try:
            con.execute(tables.ddl(raw_table, replace=True))
            count, rows = 0, []
            progress = Progress(f"reading {path.name}", 0, "records")  # the count is known at the end
            for record in iter_records(path, layout):
                rows.append({"source_file": str(path), "line_no": record.line_no, "raw": record.raw})
                if len(rows) >= CHUNK:
                    _insert(con, raw_table, rows, schema)
                    count += len(rows)
                    progress.advance(len(rows))
                    rows = []
            _insert(con, raw_table, rows, schema)
            count += len(rows)
            progress.advance(len(rows))
            progress.finish()
            header = read_header(path) if layout == "csv" else None
            con.execute(
                f"INSERT INTO {tables.SOURCES} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    role,
                    str(path),
                    spec.format,
                    digest,
                    path.stat().st_size,
                    count,
                    header,
                    utc_now(),
                ],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        loaded[role] = count
    if loaded.get(INTERACTIONS, 0) == 0:
        raise InputError(f"{spec.files[INTERACTIONS]} holds no data records")
    return loaded


def input_fingerprint(con: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> str:
    """One sha256 over the sha256 of every input file of ``spec`` (by role)."""
    rows = con.execute(f"SELECT role, sha256 FROM {tables.SOURCES} ORDER BY role").fetchall()
    wanted = "\n".join(f"{role}:{sha}" for role, sha in rows if role in spec.files)
    return hashlib.sha256(wanted.encode()).hexdigest()


# --- canonical layer ---------------------------------------------------------------------------------


def _stage_role(con, spec: DatasetSpec, role: str, now: int) -> None:
    """Parse ``raw_<role>`` into ``_stage_<role>``; rejects go to ``_stage_quarantine``."""
    header = con.execute(f"SELECT header FROM {tables.SOURCES} WHERE role = ?", [role]).fetchone()[0]
    parse = parser_for(spec, role, header, now)
    stage = f"_stage_{role}"
    con.execute(tables.ddl(tables.CANONICAL[role], temp_name=stage))
    schema = _arrow_schema(tables.CANONICAL[role])
    qschema = _arrow_schema(tables.QUARANTINE)
    reader = con.cursor()
    result = reader.execute(f"SELECT source_file, line_no, raw FROM {tables.RAW[role]} ORDER BY line_no")
    while batch := result.fetchmany(CHUNK):
        good, bad = [], []
        for source_file, line_no, raw in batch:
            try:
                row = parse(raw)
            except Reject as rej:
                bad.append(
                    {
                        "role": role,
                        "source_file": source_file,
                        "line_no": line_no,
                        "reason": rej.reason,
                        "column_name": rej.column,
                        "raw_content": raw.decode("utf-8", errors="replace"),
                    }
                )
                continue
            row["source_file"], row["line_no"] = source_file, line_no
            good.append(row)
        _insert(con, stage, good, schema)
        _insert(con, "_stage_quarantine", bad, qschema)
    reader.close()


def _resolve_duplicates(con, role: str, config: IngestConfig, source_file: str, text_min_chars: int) -> None:
    """Mark each staged row kept / exact duplicate / superseded in ``_ranked_<role>`` (and, per
    ``config.text_duplicates``, collapse interactions that repeat a user's review text)."""
    policy = config.duplicate_policy
    cols = ", ".join(f'"{c}"' for c in COLUMNS[role])
    keys = ", ".join(f'"{c}"' for c in KEYS[role])
    order_col = ORDER_BY[role]
    direction = "ASC" if policy == "first" else "DESC"
    order = (f'"{order_col}" {direction} NULLS LAST, ' if order_col else "") + f"line_no {direction}"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _exact AS
        SELECT *, row_number() OVER w AS exact_rank, first_value(line_no) OVER w AS exact_of
        FROM _stage_{role} WINDOW w AS (PARTITION BY {cols} ORDER BY line_no)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _ranked_{role} AS
        SELECT *, row_number() OVER w AS key_rank, first_value(line_no) OVER w AS key_of
        FROM _exact WHERE exact_rank = 1 WINDOW w AS (PARTITION BY {keys} ORDER BY {order})""")
    if policy == "error":
        repeated = con.execute(f"""
            SELECT {keys}, list(line_no ORDER BY line_no) FROM _ranked_{role}
            GROUP BY {keys} HAVING count(*) > 1 ORDER BY {keys} LIMIT 5""").fetchall()
        if repeated:
            n = con.execute(f"SELECT count(*) FROM _ranked_{role} WHERE key_rank > 1").fetchone()[0]
            examples = "; ".join(f"{r[:-1]} at lines {r[-1]}" for r in repeated)
            raise InputError(
                f"{source_file}: {n} repeated {'/'.join(KEYS[role])} record(s) and duplicate_policy='error'; "
                f"e.g. {examples}"
            )
    con.execute(f"""
        INSERT INTO _stage_duplicates
        SELECT '{role}', source_file, line_no, 'exact', exact_of FROM _exact WHERE exact_rank > 1
        UNION ALL
        SELECT '{role}', source_file, line_no, 'superseded', key_of FROM _ranked_{role} WHERE key_rank > 1""")
    if role == INTERACTIONS and config.text_duplicates != "keep":
        _resolve_text_duplicates(con, config.text_duplicates, text_min_chars, order, source_file)


# the data card's normalisation (data_checks.card.normalise_text), in SQL
NORMALISED_TEXT = "trim(regexp_replace(lower(coalesce(review_text, '')), '[^0-9a-z]+', ' ', 'g'))"


def _resolve_text_duplicates(con, policy: str, min_chars: int, order: str, source_file: str) -> None:
    """Collapse (or refuse) one user's identical review text on several items: one interaction per group."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _text AS
        SELECT line_no, source_file, user_id, row_number() OVER w AS text_rank, first_value(line_no) OVER w AS text_of
        FROM (SELECT *, {NORMALISED_TEXT} AS norm FROM _ranked_{INTERACTIONS} WHERE key_rank = 1)
        WHERE length(norm) >= {int(min_chars)}
        WINDOW w AS (PARTITION BY user_id, norm ORDER BY {order})""")
    n = con.execute("SELECT count(*) FROM _text WHERE text_rank > 1").fetchone()[0]
    if n == 0:
        return
    if policy == "error":
        examples = con.execute("""
            SELECT user_id, list(line_no ORDER BY line_no) FROM _text GROUP BY user_id, text_of
            HAVING count(*) > 1 ORDER BY min(line_no) LIMIT 3""").fetchall()
        shown = "; ".join(f"user {user} at lines {lines}" for user, lines in examples)
        raise InputError(
            f"{source_file}: {n} interaction(s) repeat the same user's review text on another item "
            f"(product variants?) and text_duplicates='error'; e.g. {shown}. Use --text-duplicates collapse "
            "to keep one per group, or keep to accept them (the data card will warn)"
        )
    con.execute("""
        INSERT INTO _stage_duplicates
        SELECT 'interactions', source_file, line_no, 'text_duplicate', text_of FROM _text WHERE text_rank > 1""")
    con.execute(f"DELETE FROM _ranked_{INTERACTIONS} WHERE line_no IN (SELECT line_no FROM _text WHERE text_rank > 1)")


def build_canonical_tables(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    config: IngestConfig,
    now: int | None = None,
    text_min_chars: int = DataCardConfig().text_min_chars,
) -> dict[str, dict[str, int]]:
    """Rebuild the canonical tables, ``quarantine``, ``duplicates`` and ``ingest_counts`` from raw.

    Roles without a file get a table anyway: ``items``/``users`` list the ids seen in interactions
    (other columns NULL), ``tags`` is empty. Returns the accounting per role (raw, kept, quarantined,
    exact_duplicates, superseded) and raises if the identity does not hold.
    """
    now = int(time.time()) if now is None else now
    con.execute(tables.ddl(tables.QUARANTINE, temp_name="_stage_quarantine"))
    con.execute(tables.ddl(tables.DUPLICATES, temp_name="_stage_duplicates"))
    accounting: dict[str, dict[str, int]] = {}
    for role in ROLES:
        if role not in spec.files:
            continue
        _stage_role(con, spec, role, now)
        source_file = str(spec.files[role])
        _resolve_duplicates(con, role, config, source_file, text_min_chars)
        raw = con.execute(f"SELECT count(*) FROM {tables.RAW[role]}").fetchone()[0]
        kept = con.execute(f"SELECT count(*) FROM _ranked_{role} WHERE key_rank = 1").fetchone()[0]
        counts = dict(
            con.execute("SELECT kind, count(*) FROM _stage_duplicates WHERE role = ? GROUP BY kind", [role]).fetchall()
        )
        quarantined = con.execute("SELECT count(*) FROM _stage_quarantine WHERE role = ?", [role]).fetchone()[0]
        accounting[role] = {
            "raw": raw,
            "kept": kept,
            "quarantined": quarantined,
            "exact_duplicates": counts.get("exact", 0),
            "superseded": counts.get("superseded", 0),
            "text_duplicates": counts.get("text_duplicate", 0),
        }
        a = accounting[role]
        if a["raw"] != a["kept"] + a["quarantined"] + a["exact_duplicates"] + a["superseded"] + a["text_duplicates"]:
            raise AssertionError(f"ingest lost records of {source_file}: {a}")
        if kept == 0:
            examples = con.execute(
                "SELECT line_no, reason FROM _stage_quarantine WHERE role = ? ORDER BY line_no LIMIT 3", [role]
            ).fetchall()
            raise InputError(
                f"{source_file}: none of its {raw} records is usable; e.g. "
                + "; ".join(f"line {n}: {reason}" for n, reason in examples)
            )

    # Write every canonical table in one transaction: readers see the old set or the new one.
    con.begin()
    try:
        _write_canonical(con, spec, accounting)
    except BaseException:
        con.rollback()
        raise
    con.commit()
    return accounting


def _write_canonical(con, spec: DatasetSpec, accounting: dict[str, dict[str, int]]) -> None:
    for role in ROLES:
        table = tables.CANONICAL[role]
        cols = ", ".join(f'"{c}"' for c in tables.SCHEMAS[table])
        keys = ", ".join(f'"{c}"' for c in KEYS[role])
        con.execute(tables.ddl(table, replace=True))
        if role in spec.files:
            con.execute(f"INSERT INTO {table} SELECT {cols} FROM _ranked_{role} WHERE key_rank = 1 ORDER BY {keys}")
        elif role in (ITEMS, USERS):
            key = KEYS[role][0]
            con.execute(
                f'INSERT INTO {table} ("{key}") SELECT DISTINCT "{key}" FROM {tables.CANONICAL[INTERACTIONS]} '
                f'ORDER BY "{key}"'
            )
    con.execute(tables.ddl(tables.QUARANTINE, replace=True))
    con.execute(f"INSERT INTO {tables.QUARANTINE} SELECT * FROM _stage_quarantine ORDER BY role, line_no")
    con.execute(tables.ddl(tables.DUPLICATES, replace=True))
    con.execute(f"INSERT INTO {tables.DUPLICATES} SELECT * FROM _stage_duplicates ORDER BY role, line_no")
    con.execute(tables.ddl(tables.INGEST_COUNTS, replace=True))
    for role, a in accounting.items():
        con.execute(
            f"INSERT INTO {tables.INGEST_COUNTS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                role,
                str(spec.files[role]),
                a["raw"],
                a["kept"],
                a["quarantined"],
                a["exact_duplicates"],
                a["superseded"],
                a["text_duplicates"],
            ],
        )


# --- Prefect tasks -----------------------------------------------------------------------------------


@task(cache_policy=NONE)
def load_raw(workspace: Workspace, spec: DatasetSpec) -> dict[str, int]:
    """Copy input files into immutable raw tables (reused when the same file is already there)."""
    with connect(workspace.db) as con, forward_to_run_logger():  # progress lines of large files
        return load_raw_tables(con, spec)


@task(cache_policy=NONE)
def build_canonical(
    workspace: Workspace, spec: DatasetSpec, config: IngestConfig, text_min_chars: int = DataCardConfig().text_min_chars
) -> dict[str, dict[str, int]]:
    """Parse raw records into canonical tables; quarantine and collapse with full accounting.
    ``text_min_chars``: the shortest normalised text that counts as a duplicate (the data card's)."""
    with connect(workspace.db) as con:
        return build_canonical_tables(con, spec, config, text_min_chars=text_min_chars)


@task(cache_policy=NONE)
def count_tables(workspace: Workspace) -> dict[str, int]:
    """Rows of each canonical table plus distinct users and items with interactions."""
    with connect(workspace.db, read_only=True) as con:
        counts = {role: con.execute(f"SELECT count(*) FROM {tables.CANONICAL[role]}").fetchone()[0] for role in ROLES}
        users, items = con.execute(
            f"SELECT count(DISTINCT user_id), count(DISTINCT item_id) FROM {tables.CANONICAL[INTERACTIONS]}"
        ).fetchone()
    return {**counts, "users_with_ratings": users, "items_with_ratings": items}
