"""The harness: aggregates equal direct computations, segments partition users, results land in DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from builders import folds, ratings

from models.evaluation import EvalConfig
from models.evaluation.harness import aggregate, per_user_values, significance
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


def test_planted_text_twins_withhold_the_lms_win(tmp_path, ingest):
    """Half the users wrote one text on every item they rated: held-out pairs have their twin in training,
    where an LM can read its rating. Given per-user values in which the LM wins by a mile, the judge calls it
    "better" without the data card, and withholds the verdict with the card (text_twins), so the report's
    bottom line never counts it."""
    import pandas as pd
    from builders import review, write_lines

    from data_checks import DataCardConfig
    from models.evaluation.comparisons import BETTER, NOT_JUDGED
    from models.evaluation.split import SplitConfig
    from readers import resolve_dataset
    from reports.conclusions import bottom_line
    from tasks.datacard import card_for_workspace
    from tasks.evaluate import judge_evaluations
    from tasks.split import split_workspace, write_training_reviews

    twin = "I bought this in every colour and each one is exactly what I hoped for."
    records = [
        review(
            f"u{u}", f"i{(u * 3 + j) % 40}", 1 + (u + j) % 5, ts=1_400_000_000 + j, text=twin if u < 15 else f"t{u}-{j}"
        )
        for u in range(30)
        for j in range(8)
    ]
    spec = resolve_dataset(write_lines(tmp_path / "twins.json", records))
    con, _ = ingest(spec)
    split_workspace(con, SplitConfig(protocols=("random",)))
    write_training_reviews(con)
    card = card_for_workspace(con, spec, DataCardConfig(min_fold_ratings=5, min_fold_users=5))
    assert [w["code"] for w in card["warnings"] if "random_s0" in w["splits"]] == ["variant_duplicates", "text_twins"]
    test = con.execute("SELECT user_id, count(*) AS n FROM split_assignments WHERE fold = 'test' GROUP BY 1").df()
    per_user = pd.concat(
        pd.DataFrame(
            {
                "split_id": "random_s0",
                "model": model,
                "metric": "mse",
                "k": 0,
                "user_id": test["user_id"],
                "user_segment": "4-10",
                "item_segment": "all",
                "num": test["n"] * error + 0.01 * np.arange(len(test)),
                "den": test["n"].astype(float),
            }
        )
        for model, error in (("bias_als", 1.0), ("lm_two_tower", 0.1))
    )
    fits = [
        {"split_id": "random_s0", "model": "bias_als", "params": {}, "extras": {"validation": {"mse": [1.0, 1.0]}}},
        {"split_id": "random_s0", "model": "lm_two_tower", "params": {}, "extras": {}},
    ]
    config = EvalConfig(n_boot=100, min_segment_users=5)
    blind, _ = judge_evaluations(per_user, fits, None, config)
    row = blind[(blind["model"] == "lm_two_tower") & (blind["segment"] == "all")].iloc[0]
    assert row["verdict"] == BETTER and row["family"] == "primary"  # what the report said before the gates
    gated, _ = judge_evaluations(per_user, fits, card, config)
    row = gated[(gated["model"] == "lm_two_tower") & (gated["segment"] == "all")].iloc[0]
    assert row["verdict"] == NOT_JUDGED and row["note"].startswith("text_twins: random_s0: ")
    assert "--text-duplicates collapse" in row["note"]
    assert bottom_line(gated) == (
        "Bottom line: nothing was judged. 1 comparisons on random_s0 are not judged: the data card condemns them "
        "(see Not judged)."
    )


def test_bootstrap_draws_are_made_once_per_user_count_and_give_the_cis_a_fresh_draw_gives():
    from models.evaluation import stats

    rng = np.random.default_rng(3)
    num, den = rng.random(300) * rng.integers(0, 5, 300), rng.integers(1, 10, 300).astype(float)

    def by_hand(n_boot):  # the documented draw: rng.multinomial counts, 200 draws at a time, Σnum/Σden each
        draw_rng, draws = np.random.default_rng(0), []
        for start in range(0, n_boot, 200):
            counts = draw_rng.multinomial(300, np.full(300, 1 / 300), size=min(200, n_boot - start))
            draws.extend((counts @ num) / (counts @ den))
        return tuple(float(v) for v in np.percentile(draws, [2.5, 97.5]))

    stats._COUNTS.clear()
    first = stats.bootstrap_ci(num, den, n_boot=500, seed=0)
    assert list(stats._COUNTS) == [(300, 500, 0)]  # kept for the next CI over as many users
    assert first == by_hand(500) == stats.bootstrap_ci(num, den, n_boot=500, seed=0)  # bit for bit
    other = stats.bootstrap_ci(num[::-1], den[::-1], n_boot=500, seed=0)  # the same draws, other values
    assert other != first and len(stats._COUNTS) == 1
    stats.bootstrap_ci(num[:100], den[:100], n_boot=500, seed=0)
    assert set(stats._COUNTS) == {(300, 500, 0), (100, 500, 0)}


def test_the_evaluation_stages_say_how_far_they_are(values, monkeypatch, caplog):
    import functools
    import logging

    import pandas as pd

    from models.evaluation import harness
    from models.progress import Progress

    frame = pd.concat(values[2].values())
    monkeypatch.setattr(harness, "Progress", functools.partial(Progress, every=0))  # a line at every step
    with caplog.at_level(logging.INFO, logger="reclab.progress"):
        aggregate(frame, EvalConfig(n_boot=100))
        significance(frame)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("bootstrap CIs: ") and "CIs/s, ETA" in line for line in lines)
    assert any(line.startswith("paired tests: ") and "metrics/s" in line for line in lines)
