"""Split: seeded fold assignments per protocol, the training-only review table, and the one way later stages
read a split (:func:`load_split`: training fold with its text, held-out folds without)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import duckdb
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models.evaluation.split import SplitConfig, split_all
from readers import InputError
from tasks import tables
from tasks.store import Workspace, connect, ensure, utc_now

log = logging.getLogger(__name__)


def split_workspace(con: duckdb.DuckDBPyConnection, config: SplitConfig) -> dict[str, dict[str, int]]:
    """Write ``splits`` and ``split_assignments`` for each protocol of ``config``.

    Re-running with the same seed rewrites identical rows; other seeds' splits are kept. Returns fold
    sizes per split id.
    """
    frame = con.execute(
        f"SELECT user_id, item_id, timestamp FROM {tables.CANONICAL['interactions']} ORDER BY user_id, item_id"
    ).df()
    ensure(con, tables.SPLITS)
    ensure(con, tables.SPLIT_ASSIGNMENTS)
    sizes: dict[str, dict[str, int]] = {}
    for protocol in config.protocols:
        if protocol == "temporal" and frame["timestamp"].isna().any():
            log.warning("skipping the temporal split: this dataset has interactions without a timestamp")
            continue
        for split_id, folds in split_all(frame, protocol, config).items():
            sizes[split_id] = _store_split(con, frame, split_id, protocol, folds, config)
    return sizes


def _store_split(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    split_id: str,
    protocol: str,
    folds: pd.Series,
    config: SplitConfig,
) -> dict[str, int]:
    """Write one split's row and fold assignments (replacing a previous split of the same id); its fold sizes."""
    assigned = pd.DataFrame(
        {"split_id": split_id, "user_id": frame["user_id"], "item_id": frame["item_id"], "fold": folds}
    ).dropna(subset=["fold"])  # noqa: F841 (read by DuckDB by name)
    counts = {fold: int((assigned["fold"] == fold).sum()) for fold in tables.FOLDS}
    empty = [fold for fold, count in counts.items() if count == 0]
    if empty:
        rule = (
            f"; it holds out only users with at least {config.min_user_interactions} ratings"
            if protocol == "temporal"
            else ""
        )
        raise InputError(
            f"split {split_id}: the {' and '.join(empty)} fold would be empty ({len(frame):,} ratings from "
            f"{frame['user_id'].nunique():,} users on {frame['item_id'].nunique():,} items{rule}): the dataset "
            f"is too small for the {protocol} protocol; leave it out with --protocols, or add data"
        )
    params = config.model_dump(mode="json", exclude={"protocols"})
    con.begin()
    con.execute(f"DELETE FROM {tables.SPLITS} WHERE split_id = ?", [split_id])
    con.execute(f"DELETE FROM {tables.SPLIT_ASSIGNMENTS} WHERE split_id = ?", [split_id])
    con.execute(
        f"INSERT INTO {tables.SPLITS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            split_id,
            protocol,
            config.seed,
            json.dumps(params),
            counts["train"],
            counts["validation"],
            counts["test"],
            utc_now(),
        ],
    )
    con.execute(
        f"INSERT INTO {tables.SPLIT_ASSIGNMENTS} SELECT split_id, user_id, item_id, fold FROM assigned "
        "ORDER BY user_id, item_id"
    )
    con.commit()
    return counts


# The training fold's interactions with their text: the one query every reader of review text goes through.
_TRAINING_REVIEWS = f"""
    SELECT i.user_id, i.item_id, i.rating, i.timestamp, i.summary, i.review_text
    FROM {tables.SPLIT_ASSIGNMENTS} a JOIN {tables.CANONICAL["interactions"]} i USING (user_id, item_id)
    WHERE a.split_id = ? AND a.fold = 'train'
    ORDER BY i.user_id, i.item_id"""


def training_reviews(con: duckdb.DuckDBPyConnection, split_id: str) -> pd.DataFrame:
    """The training fold's interactions with their review text and summary, for ``split_id``.

    This is the only sanctioned way to get review text for building user/item profiles: it can never
    return the text of a validation or test interaction. Columns: user_id, item_id, rating, timestamp,
    summary, review_text; sorted by (user_id, item_id).
    """
    known = con.execute(f"SELECT count(*) FROM {tables.SPLITS} WHERE split_id = ?", [split_id]).fetchone()[0]
    if not known:
        raise KeyError(f"no split {split_id!r} in this workspace; run the prepare flow first")
    return con.execute(_TRAINING_REVIEWS, [split_id]).df()


def write_training_reviews(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild ``train_reviews`` from the :func:`training_reviews` query for every split in the workspace
    (inside DuckDB: the text never passes through Python, so memory stays bounded at any size)."""
    con.execute(tables.ddl(tables.TRAIN_REVIEWS, replace=True))
    split_ids = [r[0] for r in con.execute(f"SELECT split_id FROM {tables.SPLITS} ORDER BY split_id").fetchall()]
    cols = ", ".join(c for c in tables.SCHEMAS[tables.TRAIN_REVIEWS] if c != "split_id")
    for split_id in split_ids:
        con.execute(
            f"INSERT INTO {tables.TRAIN_REVIEWS} SELECT ? AS split_id, {cols} FROM ({_TRAINING_REVIEWS})",
            [split_id, split_id],
        )
    return con.execute(f"SELECT count(*) FROM {tables.TRAIN_REVIEWS}").fetchone()[0]


def load_split(con: duckdb.DuckDBPyConnection, split_id: str) -> dict[str, pd.DataFrame]:
    """Train (with text), validation and test (without text) folds, items (with training-pair tags), users."""
    held_out = {
        fold: con.execute(
            f"""SELECT i.user_id, i.item_id, i.rating, i.timestamp
                FROM {tables.SPLIT_ASSIGNMENTS} a JOIN {tables.CANONICAL["interactions"]} i USING (user_id, item_id)
                WHERE a.split_id = ? AND a.fold = ? ORDER BY i.user_id, i.item_id""",
            [split_id, fold],
        ).df()
        for fold in ("validation", "test")
    }
    items = con.execute(
        f"""SELECT it.*, t.tags FROM {tables.CANONICAL["items"]} it
            LEFT JOIN (
                SELECT tg.item_id, string_agg(tg.tag, '|' ORDER BY tg.tag) AS tags
                FROM {tables.CANONICAL["tags"]} tg
                JOIN {tables.SPLIT_ASSIGNMENTS} a USING (user_id, item_id)
                WHERE a.split_id = ? AND a.fold = 'train' GROUP BY tg.item_id
            ) t USING (item_id) ORDER BY it.item_id""",
        [split_id],
    ).df()
    users = con.execute(f"SELECT * FROM {tables.CANONICAL['users']} ORDER BY user_id").df()
    return {"train": training_reviews(con, split_id), **held_out, "items": items, "users": users}


def split_protocol(con: duckdb.DuckDBPyConnection, split_id: str) -> str:
    row = con.execute(f"SELECT protocol FROM {tables.SPLITS} WHERE split_id = ?", [split_id]).fetchone()
    if row is None:
        raise KeyError(f"no split {split_id!r} in this workspace; run the prepare flow first")
    return row[0]


def planned_folds(db: Path) -> dict[str, int]:
    """K of each k-fold unit of the workspace (``kfold_s0``: 5), from its splits' stored parameters."""
    from models.evaluation.split import planned_folds as of_splits

    with connect(db, read_only=True) as con:
        return of_splits(con.execute(f"SELECT split_id, parameters FROM {tables.SPLITS}").df())


def split_fingerprint(con: duckdb.DuckDBPyConnection, split_id: str) -> str:
    """A digest of everything a split's models read: fold assignments with ratings and times, the training
    reviews' text, the items (and tags) tables. Order-independent (XOR of row hashes; rows are unique)."""
    queries = [
        (
            f"""SELECT count(*), bit_xor(hash(a.user_id, a.item_id, a.fold, i.rating, i.timestamp))
             FROM {tables.SPLIT_ASSIGNMENTS} a JOIN {tables.CANONICAL["interactions"]} i USING (user_id, item_id)
             WHERE a.split_id = ?""",
            [split_id],
        ),
        (f"SELECT count(*), bit_xor(hash(r)) FROM {tables.TRAIN_REVIEWS} r WHERE r.split_id = ?", [split_id]),
        *[
            (f"SELECT count(*), bit_xor(hash(t)) FROM {tables.CANONICAL[name]} t", [])
            for name in ("items", "users", "tags")
        ],
    ]
    parts = [con.execute(sql, args).fetchone() for sql, args in queries]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@task(cache_policy=NONE)
def split_interactions(workspace: Workspace, config: SplitConfig) -> dict[str, dict[str, int]]:
    """Assign every interaction to a fold under each requested protocol."""
    with connect(workspace.db) as con:
        return split_workspace(con, config)


@task(cache_policy=NONE)
def collect_training_reviews(workspace: Workspace) -> int:
    """Materialise the training folds' review text (the only text later stages may read)."""
    with connect(workspace.db) as con:
        return write_training_reviews(con)
