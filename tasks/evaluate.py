"""Evaluate: aggregate per-user values into metrics with CIs and paired tests, and store all three layers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models.evaluation.harness import EvalConfig, aggregate, significance
from tasks import tables
from tasks.store import connect, replace_run_rows


def store_evaluation(
    con: duckdb.DuckDBPyConnection, run_id: str, split_id: str, per_user: pd.DataFrame, config: EvalConfig
) -> pd.DataFrame:
    """Write per-user values, aggregated rows (CIs) and paired tests for one split; return the aggregates."""
    results = aggregate(per_user, config)
    tests = significance(per_user)
    con.begin()
    try:
        replace_run_rows(con, tables.EVAL_PER_USER, run_id, split_id, per_user)
        replace_run_rows(con, tables.EVAL_RESULTS, run_id, split_id, results)
        replace_run_rows(con, tables.EVAL_TESTS, run_id, split_id, tests)
    except BaseException:
        con.rollback()
        raise
    con.commit()
    return results


@task(cache_policy=NONE)
def evaluate_models(db: Path, run_id: str, split_id: str, per_user: pd.DataFrame, config: EvalConfig) -> pd.DataFrame:
    """Aggregate and test one split's per-user values; store them in the evaluation tables."""
    with connect(db) as con:
        return store_evaluation(con, run_id, split_id, per_user, config)
