"""Evaluate: aggregate each split's per-user values into metrics with CIs and pairwise tests; then judge the
run: the pre-registered comparisons of every judged unit (a split, or a k-fold protocol's folds pooled), the
data card's gates, the family corrections, stored in ``eval_differences``."""

from __future__ import annotations

import json
import logging

import duckdb
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from data_checks.card import verdict_gates
from models import registry
from models.evaluation import EvalConfig
from models.evaluation.comparisons import judge, pool_folds, unit_differences, units_of
from models.evaluation.harness import aggregate, significance
from tasks import tables
from tasks.datacard import latest_card
from tasks.logs import forward_to_run_logger
from tasks.store import Workspace, connect, ensure, replace_run_rows

log = logging.getLogger(__name__)


def fusion_components(fits: list[dict]) -> dict[str, list[str]]:
    """Task -> the models the fusion blends for it, read from its fitted weights (over every fit given: the
    folds of a unit)."""
    out: dict[str, list[str]] = {"rating": [], "ranking": []}
    for fit in fits:
        if fit["model"] != registry.FUSION:
            continue
        params = fit["params"]
        rating = [name for name in params.get("rating_weights_", {}).get("global", {}) if name != "intercept"]
        for which, names in (("rating", rating), ("ranking", list(params.get("ranking_weights_", {})))):
            out[which] += [name for name in names if name not in out[which]]
    return out


def store_evaluation(
    con: duckdb.DuckDBPyConnection, run_id: str, split_id: str, per_user: pd.DataFrame, config: EvalConfig
) -> pd.DataFrame:
    """Write one split's per-user values, aggregated rows (CIs) and all-pairs tests; return the aggregates."""
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


def run_fits(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    """The run's ``model_fits`` rows as dicts, ``params`` and ``extras`` parsed."""
    frame = con.execute(
        f"SELECT split_id, model, params, extras FROM {tables.MODEL_FITS} WHERE run_id = ? ORDER BY ALL", [run_id]
    ).df()
    return [
        {"split_id": s, "model": m, "params": _json(p), "extras": _json(e)}
        for s, m, p, e in frame.itertuples(index=False)
    ]


def _json(value) -> dict:
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return value if isinstance(value, dict) else {}


def judge_evaluations(
    per_user: pd.DataFrame, fits: list[dict], card: dict | None, config: EvalConfig
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A run's verdicts (``split_id``: the judged unit) from its splits' per-user values (with ``split_id``)
    and fit records, and the pooled per-user values of every unit made of several splits (k-fold)."""
    measured, pooled = [], {}
    for unit, split_ids in units_of(sorted(per_user["split_id"].unique())).items():
        values = per_user[per_user["split_id"].isin(split_ids)]
        models = values.groupby("model")["split_id"].nunique()
        incomplete = sorted(models[models < len(split_ids)].index)
        if incomplete:  # a fold without the model would pool its users' folds unevenly
            log.warning("%s: %s missing from some folds, left out of its comparisons", unit, ", ".join(incomplete))
            values = values[~values["model"].isin(incomplete)]
        values = pool_folds(values)
        if split_ids != [unit]:  # a k-fold unit (even one fold of it): its pooled rows under the unit's id
            pooled[unit] = values
        unit_fits = [f for f in fits if f["split_id"] in split_ids]
        rows = unit_differences(
            values,
            unit_fits,
            reference_candidates=registry.REFERENCE_CANDIDATES,
            contenders=registry.CONTENDERS,
            fusion=registry.FUSION,
            components=fusion_components(unit_fits),
            k=config.k,
            n_boot=config.n_boot,
            seed=config.seed,
            min_users=config.min_segment_users,
            ablations=registry.ABLATIONS,
        )
        measured.append(rows.assign(split_id=unit))
    if not measured:
        return judge(pd.DataFrame(columns=["split_id", "family", "k", "t_p"])), pooled
    gates = verdict_gates(card, per_user["split_id"].unique(), config.k)
    return judge(pd.concat(measured, ignore_index=True), gates, config.alpha), pooled


@task(cache_policy=NONE)
def judge_run(workspace: Workspace, run_id: str, config: EvalConfig) -> pd.DataFrame:
    """Judge every unit of the run (its splits already evaluated) and store the verdicts in
    ``eval_differences`` (and a k-fold unit's pooled aggregates in ``eval_results``, under the unit's id)."""
    with connect(workspace.db, read_only=True) as con:
        per_user = con.execute(
            f"SELECT * EXCLUDE (run_id) FROM {tables.EVAL_PER_USER} WHERE run_id = ? ORDER BY ALL", [run_id]
        ).df()
        fits = run_fits(con, run_id)
        card = latest_card(con)
    with forward_to_run_logger():  # progress lines of the paired differences and CIs reach the run's log
        diffs, pooled = judge_evaluations(per_user, fits, card, config)
        pooled = {unit: aggregate(values, config) for unit, values in pooled.items()}
    with connect(workspace.db) as con:
        ensure(con, tables.EVAL_DIFFERENCES)
        con.begin()
        try:
            con.execute(f"DELETE FROM {tables.EVAL_DIFFERENCES} WHERE run_id = ?", [run_id])
            for unit, part in diffs.groupby("split_id", sort=False):
                replace_run_rows(con, tables.EVAL_DIFFERENCES, run_id, unit, part.drop(columns=["split_id"]))
            for unit, aggregated in pooled.items():
                replace_run_rows(con, tables.EVAL_RESULTS, run_id, unit, aggregated)
        except BaseException:
            con.rollback()
            raise
        con.commit()
    return diffs


@task(cache_policy=NONE)
def evaluate_models(
    workspace: Workspace, run_id: str, split_id: str, per_user: pd.DataFrame, config: EvalConfig
) -> pd.DataFrame:
    """Aggregate and test one split's per-user values; store them in the evaluation tables."""
    with connect(workspace.db) as con, forward_to_run_logger():  # the bootstrap's progress lines reach the run's log
        return store_evaluation(con, run_id, split_id, per_user, config)
