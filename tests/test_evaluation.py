"""The harness: aggregates equal direct computations, segments partition users, results land in DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from builders import folds, ratings

from models.evaluation.harness import EvalConfig, aggregate, per_user_values, significance
from models.recommenders.baselines import BiasALS, GlobalMean, Popularity
from tasks import tables
from tasks.evaluate import store_evaluation

CONFIG = EvalConfig(k=5, n_boot=200)


@pytest.fixture(scope="module")
def values():
    train, valid, test = folds(ratings(n_users=30, n_items=50, per_user=15))
    parts = {}
    for model in (GlobalMean(), BiasALS(), Popularity()):
        model.fit(train, valid)
        parts[model.name] = per_user_values(model, model.name, train, test, CONFIG)[0]
    return train, test, parts


def test_aggregate_rmse_equals_direct_computation(values):
    train, test, parts = values
    model = BiasALS().fit(train)
    frame = per_user_values(model, "bias", train, test, CONFIG)[0]
    got = aggregate(frame, CONFIG).set_index(["metric", "segment"])
    pred = np.clip(model.predict(test["user_id"], test["item_id"]), 1, 5)
    assert got.at[("rmse", "all"), "value"] == pytest.approx(np.sqrt(np.mean((pred - test["rating"]) ** 2)))
    assert got.at[("mae", "all"), "value"] == pytest.approx(np.mean(np.abs(pred - test["rating"])))
    row = got.loc[("rmse", "all")]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_user_segments_partition_the_users(values):
    _, test, parts = values
    frame = parts["popularity"]
    ndcg = frame[(frame["metric"] == "ndcg") & (frame["item_segment"] == "all")]
    assert ndcg["user_id"].is_unique and set(ndcg["user_id"]) == set(test["user_id"])
    rows = aggregate(frame, CONFIG)
    seg = rows[(rows["metric"] == "ndcg") & rows["segment"].str.startswith("users:")]
    assert seg["n_users"].sum() == len(ndcg)


def test_item_segments_only_for_rating_metrics(values):
    rows = aggregate(values[2]["bias_als"], CONFIG)
    item_rows = rows[rows["segment"].str.startswith("items:")]
    assert set(item_rows["metric"]) == {"mse", "rmse", "mae"}


def test_significance_covers_every_pair_with_holm(values):
    _, _, parts = values
    import pandas as pd

    tests = significance(pd.concat(parts.values()))
    mae = tests[tests["metric"] == "mae"]
    assert len(mae) == 1 and set(mae[["model_a", "model_b"]].iloc[0]) == {"bias_als", "global_mean"}
    assert (tests["t_p_holm"] >= tests["t_p"] - 1e-12).all()


def test_store_evaluation_replaces_a_runs_rows(values, tmp_path):
    import pandas as pd

    frame = pd.concat(values[2].values())
    con = duckdb.connect(str(tmp_path / "e.duckdb"))
    for _ in range(2):
        results = store_evaluation(con, "run-1", "random_s0", frame, CONFIG)
    n = con.execute(f"SELECT count(*) FROM {tables.EVAL_RESULTS} WHERE run_id = 'run-1'").fetchone()[0]
    assert n == len(results) > 0
    assert con.execute(f"SELECT count(*) FROM {tables.EVAL_PER_USER}").fetchone()[0] == len(frame)
    assert con.execute(f"SELECT count(*) FROM {tables.EVAL_TESTS}").fetchone()[0] > 0


def test_ranking_in_blocks_of_users_and_on_a_user_sample(monkeypatch):
    """Scoring block by block (any budget) gives exactly the all-at-once values; a user sample is a seeded
    subset of those same per-user values."""
    import models.evaluation.metrics
    from models.evaluation.metrics import user_blocks

    assert user_blocks(5, 4) == [slice(0, 5)]
    monkeypatch.setattr(models.evaluation.metrics, "SCORE_BUDGET", 8)
    assert user_blocks(5, 4) == [slice(0, 2), slice(2, 4), slice(4, 5)] and user_blocks(3, 100) == [
        slice(0, 1),
        slice(1, 2),
        slice(2, 3),
    ]
    train, valid, test = folds(ratings(n_users=30, n_items=50, per_user=15))
    model = BiasALS().fit(train, valid)
    whole, _ = per_user_values(model, "bias", train, test, EvalConfig())
    monkeypatch.setattr(models.evaluation.metrics, "SCORE_BUDGET", 3)  # one user per block
    blocked, _ = per_user_values(model, "bias", train, test, EvalConfig())
    assert blocked.equals(whole)
    sampled, _ = per_user_values(model, "bias", train, test, EvalConfig(ranking_users=2))
    ranking = sampled[sampled["metric"] == "ndcg"]
    assert ranking["user_id"].nunique() == 2
    merged = ranking.merge(whole, on=["metric", "k", "user_id", "item_segment"], suffixes=("", "_all"))
    assert len(merged) == 2 and (merged["num"] == merged["num_all"]).all()
    assert sampled[sampled["metric"] == "mse"].equals(whole[whole["metric"] == "mse"])  # rating: every user
