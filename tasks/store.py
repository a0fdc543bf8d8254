"""The DuckDB workspace: where the database file lives (the default workspace is defined here, once) and how
tasks open it. Importing this module is cheap (DuckDB is imported when a database is opened), so the command
line and the service can name the default workspace without loading the stack."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from readers import DEFAULT_DATASET, InputError
from tasks import tables

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKSPACES = PROJECT_ROOT / "workspace"  # a dataset's workspace is <this>/<dataset name> by default
DEFAULT_WORKSPACE = DEFAULT_WORKSPACES / DEFAULT_DATASET.name  # the embedded default dataset's


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace database's write lock for longer than we wait."""


SECRET_FILE = "secret.key"  # the workspace's key for user pseudonyms (Workspace.user_key)


@dataclass(frozen=True)
class Workspace:
    """A folder holding one DuckDB database (``reclab.duckdb``) and one sub-folder per run."""

    root: Path

    @classmethod
    def for_dataset(cls, name: str, root: str | Path | None = None) -> Workspace:
        """``root`` as given, else ``<project>/workspace/<dataset name>``."""
        return cls(Path(root) if root is not None else DEFAULT_WORKSPACES / name)

    @classmethod
    def existing(cls, root: str | Path) -> Workspace:
        """A workspace that prepare has already filled; a clear error otherwise."""
        workspace = cls(Path(root))
        if not workspace.db.exists():
            raise InputError(
                f"no prepared workspace at {workspace.root} (no {workspace.db.name}); "
                "run `python -m flows.prepare` for that dataset first, or pass --workspace"
            )
        return workspace

    @property
    def db(self) -> Path:
        return self.root / "reclab.duckdb"

    def lock(self, holder: str, wait_s: float | None = None):
        """Hold this workspace for one flow run: see :func:`workspace_lock`."""
        return workspace_lock(self.root, holder, wait_s)

    def user_key(self, create: bool = True) -> bytes | None:
        """The workspace's secret key for user pseudonyms (``models.serving.pseudonym``): 32 random bytes in
        ``<workspace>/secret.key``, readable by its owner only, made on first use; never in a bundle or a log.
        ``create=False``: None where there is none yet (nothing was published with pseudonyms)."""
        path = self.root / SECRET_FILE
        if not path.exists():
            if not create:
                return None
            self.root.mkdir(parents=True, exist_ok=True)
            # written whole under another name with owner-only permissions (never a moment readable by others
            # or half written), then linked into place: the first of two racing processes wins, both read it
            staged = self.root / f".{SECRET_FILE}-{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            try:
                os.link(staged, path)
            except FileExistsError:
                pass
            finally:
                staged.unlink()
        return path.read_bytes()

    def run_dir(self, run_id: str) -> Path:
        path = self.root / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path


# DuckDB works out of core: past its memory limit (default 80% of RAM) it spills to ``<db>.tmp``. Set
# RECLAB_DUCKDB_MEMORY_LIMIT (e.g. "2GB") to keep it lower on a shared machine.
DUCKDB_CONFIG = (
    {"memory_limit": os.environ["RECLAB_DUCKDB_MEMORY_LIMIT"]} if os.environ.get("RECLAB_DUCKDB_MEMORY_LIMIT") else {}
)
LOCK_WAIT_S = float(os.environ.get("RECLAB_WORKSPACE_WAIT_S", "900"))  # how long a run waits for another
_held: dict[Path, int] = {}  # lock depth per workspace in this process (a flow's sub-flows re-enter it)
_held_guard = threading.Lock()


@contextmanager
def workspace_lock(root: str | Path, holder: str, wait_s: float | None = None) -> Iterator[None]:
    """One run at a time per workspace: an exclusive lock on ``<workspace>/.lock`` for the whole run.

    A second run (another process) waits, saying whom it waits for, up to ``wait_s`` seconds (default
    ``RECLAB_WORKSPACE_WAIT_S``, 900), then stops with :class:`WorkspaceBusy`; it never interleaves its
    writes with the first. Re-entrant within a process (``full`` holds it around its sub-flows). The lock
    is the operating system's (``flock``): a killed run releases it.
    """
    import fcntl

    path = Path(root).resolve() / ".lock"
    with _held_guard:
        if _held.get(path):
            _held[path] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    handle = path.open("a+")
    deadline, told = time.monotonic() + wait_s, False
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                other = handle.read().strip() or "another run"
                if time.monotonic() > deadline:
                    raise WorkspaceBusy(
                        f"workspace {path.parent} is in use by {other} (waited {wait_s:.0f} s): wait for it to "
                        "finish, or pass another --workspace"
                    ) from None
                if not told:
                    logging.getLogger("reclab").warning(
                        "workspace %s is in use by %s; waiting up to %.0f s", path.parent, other, wait_s
                    )
                    told = True
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()}, since {utc_now():%Y-%m-%d %H:%M:%S} UTC)")
        handle.flush()
        with _held_guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(path, None)
            handle.seek(0)
            handle.truncate()
            handle.flush()
    finally:
        handle.close()  # closing releases the lock


@contextmanager
def connect(db: str | Path, *, read_only: bool = False, wait_s: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the workspace database, waiting up to ``wait_s`` for another writer to let go of it.

    DuckDB allows one writing process per file, and within a process one read-only setting at a time; a
    conflicting open fails at once, which we turn into a wait and then a clear message.
    """
    import duckdb

    db = Path(db)
    if not read_only:
        db.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(db), read_only=read_only, config=DUCKDB_CONFIG)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as err:
            # another process holds the write lock, or (same process, another thread) the file is open
            # with the other read-only setting: both let go when that task's short read or write ends
            if "lock" not in str(err).lower() and "different configuration" not in str(err):
                raise
            if time.monotonic() > deadline:
                raise WorkspaceBusy(
                    f"workspace database {db} is in use by another process (waited {wait_s:.0f} s): "
                    "wait for that run to finish or pass another --workspace"
                ) from None
            time.sleep(0.5)
    try:
        yield con
    finally:
        con.close()


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` (flushed to disk), then rename over it: readers see the old
    file or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0]
    )


def utc_now() -> datetime:
    """The current UTC time without tzinfo, as DuckDB TIMESTAMP columns store it."""
    return datetime.now(UTC).replace(tzinfo=None)


def replace_run_rows(
    con: duckdb.DuckDBPyConnection, table: str, run_id: str, split_id: str, frame: pd.DataFrame | None
) -> None:
    """Replace a registered table's rows of (``run_id``, ``split_id``) by ``frame`` (None: just delete them).

    ``frame`` holds every column of the table except ``run_id`` and ``split_id``.
    """
    ensure(con, table)
    con.execute(f"DELETE FROM {table} WHERE run_id = ? AND split_id = ?", [run_id, split_id])
    if frame is not None:
        rows = frame.assign(run_id=run_id, split_id=split_id)[tables.columns(table)]  # noqa: F841 (read by DuckDB)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM rows")


def ensure(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Create a registered table if it does not exist yet; add the columns a newer version registered to a
    table an older one made (their old rows read NULL there; columns it no longer registers are kept)."""
    if not table_exists(con, table):
        con.execute(tables.ddl(table))
        return
    present = {row[0] for row in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()}
    for name, dtype in tables.SCHEMAS[table].items():
        if name not in present:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {dtype}')
