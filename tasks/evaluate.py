"""Evaluate: aggregate per-user values into metrics with CIs and paired tests, and store all three layers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models import registry
from models.evaluation.comparisons import comparisons, paired_differences, ranks_nothing
from models.evaluation.harness import EvalConfig, aggregate, significance
from tasks import tables
from tasks.store import connect, replace_run_rows


def fusion_components(fits: list[dict]) -> dict[str, list[str]]:
    """Task -> the models the fusion blends for it, read from its fitted weights."""
    params = next((f["params"] for f in fits if f["model"] == registry.FUSION), {})
    rating = [name for name in params.get("rating_weights_", {}).get("global", {}) if name != "intercept"]
    return {"rating": rating, "ranking": list(params.get("ranking_weights_", {}))}


def no_ranking(fits: list[dict]) -> set[str]:
    """Models that gave every candidate the same score for every ranked user of the split."""
    return {f["model"] for f in fits if ranks_nothing(f.get("extras"))}


def differences(per_user: pd.DataFrame, results: pd.DataFrame, fits: list[dict], config: EvalConfig) -> pd.DataFrame:
    """Each model against the best traditional model, and the fusion against each of its components."""
    pairs = comparisons(
        results,
        traditional=registry.CONTENDERS,
        fusion=registry.FUSION,
        components=fusion_components(fits),
        no_ranking=no_ranking(fits),
    )
    return paired_differences(
        per_user, pairs, n_boot=config.n_boot, seed=config.seed, alpha=config.alpha, min_users=config.min_segment_users
    )


def store_evaluation(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    split_id: str,
    per_user: pd.DataFrame,
    config: EvalConfig,
    fits: list[dict] | None = None,
) -> pd.DataFrame:
    """Write per-user values, aggregated rows (CIs), all-pairs tests and the paired differences the report
    claims for one split; return the aggregates."""
    results = aggregate(per_user, config)
    tests = significance(per_user)
    diffs = differences(per_user, results, fits or [], config)
    con.begin()
    try:
        replace_run_rows(con, tables.EVAL_PER_USER, run_id, split_id, per_user)
        replace_run_rows(con, tables.EVAL_RESULTS, run_id, split_id, results)
        replace_run_rows(con, tables.EVAL_TESTS, run_id, split_id, tests)
        replace_run_rows(con, tables.EVAL_DIFFERENCES, run_id, split_id, diffs)
    except BaseException:
        con.rollback()
        raise
    con.commit()
    return results


@task(cache_policy=NONE)
def evaluate_models(
    db: Path, run_id: str, split_id: str, per_user: pd.DataFrame, config: EvalConfig, fits: list[dict] | None = None
) -> pd.DataFrame:
    """Aggregate and test one split's per-user values; store them in the evaluation tables. ``fits``: the
    split's fit records (which models do not rank, what the fusion blends)."""
    with connect(db) as con:
        return store_evaluation(con, run_id, split_id, per_user, config, fits)
