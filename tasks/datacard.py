"""Data card: describe the prepared dataset and its splits, store the card in DuckDB, warn in one paragraph."""

from __future__ import annotations

import json
import logging

import duckdb
from prefect import task
from prefect.cache_policies import NONE

from data_checks import DataCardConfig
from data_checks.card import data_card, warning_paragraph
from readers import DatasetSpec
from readers.schema import INTERACTIONS, ITEMS
from tasks import tables
from tasks.store import Workspace, connect, ensure, table_exists, utc_now

log = logging.getLogger(__name__)


def card_for_workspace(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, config: DataCardConfig) -> dict:
    """The data card of the workspace's canonical interactions and its stored splits."""
    interactions = con.execute(
        f"SELECT user_id, item_id, rating, review_text FROM {tables.CANONICAL[INTERACTIONS]}"
    ).df()
    metadata = None
    if ITEMS in spec.files:
        metadata = con.execute(f"SELECT * FROM {tables.CANONICAL[ITEMS]}").df()
    splits = con.execute(f"SELECT split_id, protocol FROM {tables.SPLITS} ORDER BY split_id").df()
    assignments = con.execute(f"SELECT split_id, user_id, item_id, fold FROM {tables.SPLIT_ASSIGNMENTS}").df()
    return data_card(interactions, metadata, assignments, splits, config)


def store_card(con: duckdb.DuckDBPyConnection, run_id: str, card: dict) -> None:
    ensure(con, tables.DATA_CARD)
    con.execute(f"DELETE FROM {tables.DATA_CARD} WHERE run_id = ?", [run_id])
    con.execute(
        f"INSERT INTO {tables.DATA_CARD} VALUES (?, ?, ?, ?)",
        [run_id, utc_now(), len(card["warnings"]), json.dumps(card)],
    )


def latest_card(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The most recent data card of the workspace (None when prepare has not written one)."""
    if not table_exists(con, tables.DATA_CARD):
        return None
    row = con.execute(f"SELECT card FROM {tables.DATA_CARD} ORDER BY created_at DESC LIMIT 1").fetchone()
    return None if row is None else json.loads(row[0])


@task(cache_policy=NONE)
def describe_data(workspace: Workspace, spec: DatasetSpec, config: DataCardConfig, run_id: str) -> dict:
    """Compute, store and announce the data card; its warnings go to the log as one paragraph."""
    with connect(workspace.db) as con:
        card = card_for_workspace(con, spec, config)
        store_card(con, run_id, card)
    paragraph = warning_paragraph(card)
    if paragraph:
        from prefect import get_run_logger

        get_run_logger().warning(paragraph)
    return card
