"""Retention: the serving log's requests older than the retention period removed (the ``prune`` flow)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from tasks.serving_log import SERVING_DB, prune
from tasks.store import Workspace


@task(cache_policy=NONE)
def prune_serving_log(workspace: Workspace, retention_days: int) -> int:
    """Remove ``<workspace>/serving.duckdb``'s requests older than ``retention_days``; return how many."""
    return prune(workspace.root / SERVING_DB, retention_days)
