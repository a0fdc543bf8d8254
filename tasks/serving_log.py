"""The serving log and the A/B comparison of its arms.

``python -m serve`` writes every answered request to ``<workspace>/serving.duckdb`` (its own file: a flow
holding the workspace database never blocks serving), in batches from a background thread. The A/B report
joins the log with the workspace's interactions: a served list *hits* when the user later (after the
response) interacts with one of its items; arms are compared on per-user hit rates (Welch's t-test and
Mann-Whitney U: users are independent between arms) and on latency.

Retention: requests are kept for ``retention_days`` (default 90, ``python -m serve --retention-days``). The
service removes older rows when it starts, and the ``prune`` flow (a daily deployment) removes them while it
runs; the A/B report says which period its requests cover.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from models.serving import RETENTION_DAYS
from models.serving.pseudonym import pseudonymise
from readers import InputError
from tasks import tables
from tasks.store import Workspace, connect, ensure

SERVING_DB = "serving.duckdb"
log = logging.getLogger("reclab.serve")


def prune(db: str | Path, retention_days: int = RETENTION_DAYS, now: datetime | None = None) -> int:
    """Remove the serving log's requests older than ``retention_days`` (before ``now``); return how many."""
    if not Path(db).exists():
        return 0
    cutoff = (now or datetime.now(UTC).replace(tzinfo=None)) - timedelta(days=retention_days)
    with connect(Path(db), wait_s=5) as con:
        ensure(con, tables.SERVING_LOG)
        (removed,) = con.execute(f"DELETE FROM {tables.SERVING_LOG} WHERE served_at < ?", [cutoff]).fetchone()
    return int(removed)


class ResponseLog:
    """Queue rows from request handlers (cheap, never blocks a request) and insert them in batches."""

    def __init__(self, db: Path, flush_s: float = 1.0, retention_days: int = RETENTION_DAYS):
        self.db, self.flush_s, self.retention_days = Path(db), flush_s, retention_days
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serving-log", daemon=True)

    def start(self) -> None:
        with connect(self.db) as con:
            ensure(con, tables.SERVING_LOG)
        removed = prune(self.db, self.retention_days)
        if removed:
            log.warning("serving log: %d requests older than %d days removed", removed, self.retention_days)
        self._thread.start()

    def add(self, endpoint: str, user_id: str, arm: str, version: str, items: list[str], latency_ms: float) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        self._rows.put((now, endpoint, user_id, arm, version, items, latency_ms))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> int:
        rows = []
        while True:
            try:
                rows.append(self._rows.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return 0
        try:
            with connect(self.db, wait_s=5) as con:
                con.executemany(f"INSERT INTO {tables.SERVING_LOG} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except Exception:  # logging must never take the service down; the rows are reported lost
            log.exception("could not write %d serving log rows to %s", len(rows), self.db)
            return 0
        return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()


def ab_report(workspace_root: str | Path) -> dict:
    """Per-arm requests, users, latency and later-interaction hit rates, and the tests between the arms."""
    from models.evaluation.stats import two_sample_tests

    root = Path(workspace_root)
    if not (root / SERVING_DB).exists():
        raise InputError(f"no serving log at {root / SERVING_DB}: serve with `python -m serve` first")
    with connect(root / SERVING_DB, read_only=True) as con:
        served = con.execute(
            f"SELECT served_at, user_id, arm, model_version, items, latency_ms FROM {tables.SERVING_LOG} "
            "WHERE endpoint = 'recommend'"
        ).df()
    key = Workspace(root).user_key(create=False)
    interactions = tables.CANONICAL["interactions"]
    with connect(root / "reclab.duckdb", read_only=True) as con:
        # the served users as the interactions name them: where the log holds pseudonyms, the users whose
        # pseudonym was served (each distinct user hashed once, not every interaction)
        logged_as = {u: u for u in set(served["user_id"])}
        if key is not None:
            users = [u for (u,) in con.execute(f"SELECT DISTINCT user_id FROM {interactions}").fetchall()]
            logged_as = {u: p for u, p in zip(users, pseudonymise(users, key), strict=True) if p in logged_as}
        later = con.execute(
            f"SELECT user_id, item_id, timestamp FROM {interactions} WHERE user_id IN (SELECT unnest(?))",
            [sorted(logged_as)],
        ).df()
    later = later.assign(user_id=later["user_id"].map(logged_as))  # matched to the log by the id it holds
    return compare_arms(served, later, two_sample_tests)


def compare_arms(served: pd.DataFrame, interactions: pd.DataFrame, test=None) -> dict:
    """``served``: (served_at, user_id, arm, model_version, items, latency_ms); ``interactions``: (user_id,
    item_id, timestamp in epoch seconds). A response hits when one of its items is interacted with after it."""
    seen_after: dict[str, list[tuple[str, float]]] = {}
    for row in interactions.itertuples(index=False):
        seen_after.setdefault(str(row.user_id), []).append((str(row.item_id), float(row.timestamp)))
    served = served.copy()
    stamps = (pd.to_datetime(served["served_at"]) - pd.Timestamp(0)).dt.total_seconds()  # any datetime resolution
    served["hit"] = [
        any(item in shown and ts > at for item, ts in seen_after.get(str(user), []))
        for user, shown, at in zip(served["user_id"], map(set, served["items"]), stamps, strict=True)
    ]
    per_user = served.groupby(["arm", "user_id"])["hit"].mean().rename("hit_rate").reset_index()
    arms = {}
    for arm, rows in served.groupby("arm"):
        users = per_user[per_user["arm"] == arm]["hit_rate"].to_numpy()
        arms[arm] = {
            "requests": len(rows),
            "users": int(len(users)),
            "versions": sorted(set(rows["model_version"])),
            "hit_rate": float(users.mean()) if len(users) else float("nan"),
            "latency_p50_ms": float(np.percentile(rows["latency_ms"], 50)),
            "latency_p99_ms": float(np.percentile(rows["latency_ms"], 99)),
        }
    stamps = pd.to_datetime(served["served_at"])
    out = {
        "period": {  # what the comparison covers: the log keeps requests for its retention period only
            "first_request": stamps.min().isoformat() if len(served) else None,
            "last_request": stamps.max().isoformat() if len(served) else None,
        },
        "arms": arms,
    }
    if test is not None and {"champion", "challenger"} <= set(arms):
        a = per_user[per_user["arm"] == "challenger"]["hit_rate"].to_numpy()
        b = per_user[per_user["arm"] == "champion"]["hit_rate"].to_numpy()
        out["challenger_vs_champion"] = test(a, b)
    return out
