"""Paired differences: "better" only when significant, direction stated, small segments excluded, the two
tests' disagreement flagged, the reference chosen among the models that rank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation.comparisons import (
    BETTER,
    SAME,
    TOO_FEW,
    WORSE,
    best_reference,
    comparisons,
    paired_differences,
)
from models.evaluation.stats import paired_bootstrap_ci


def per_user(values: dict[str, np.ndarray], metric: str = "mse", segments: list[str] | None = None) -> pd.DataFrame:
    """Per-user rows (one pair per user, den 1) of each model's values; users in the given activity segments."""
    n = len(next(iter(values.values())))
    segments = segments or ["4-10"] * n
    return pd.concat(
        pd.DataFrame(
            {
                "model": model,
                "metric": metric,
                "k": 0 if metric == "mse" else 10,
                "user_id": [f"u{i}" for i in range(n)],
                "user_segment": segments,
                "item_segment": "all",
                "num": v,
                "den": 1.0,
            }
        )
        for model, v in values.items()
    )


def one(frame: pd.DataFrame, **where) -> pd.Series:
    mask = np.logical_and.reduce([frame[c] == v for c, v in where.items()])
    assert mask.sum() == 1
    return frame[mask].iloc[0]


RNG = np.random.default_rng(0)
BASE = RNG.gamma(2.0, 0.5, size=60)


def test_a_clear_gain_is_better_and_a_clear_loss_is_worse():
    values = {"ref": BASE, "good": BASE - 0.3 + RNG.normal(0, 0.05, 60), "bad": BASE + 0.3}
    out = paired_differences(
        per_user(values), [("mse", 0, "good", "ref", "x"), ("mse", 0, "bad", "ref", "x")], n_boot=200
    )
    good, bad = one(out, model="good", segment="all"), one(out, model="bad", segment="all")
    assert good["verdict"] == BETTER and good["ci_high"] < 0 and good["diff"] == pytest.approx(-0.3, abs=0.03)
    assert bad["verdict"] == WORSE and bad["ci_low"] > 0 and bad["share_worse"] == 1.0
    assert good["t_p_holm"] >= good["t_p"]  # corrected over the two comparisons


def test_a_small_noisy_difference_is_no_detectable_difference_with_its_ci():
    values = {"ref": BASE, "other": BASE * (1 - 0.002) + RNG.normal(0, 0.2, 60)}
    row = one(paired_differences(per_user(values), [("mse", 0, "other", "ref", "x")], n_boot=200), segment="all")
    assert row["verdict"] == SAME and row["ci_low"] < 0 < row["ci_high"]


def test_higher_is_better_for_ranking_metrics():
    values = {"ref": BASE / 10, "up": BASE / 10 + 0.05}
    row = one(paired_differences(per_user(values, "ndcg"), [("ndcg", 10, "up", "ref", "x")], n_boot=200), segment="all")
    assert row["verdict"] == BETTER and row["share_better"] == 1.0


def test_segments_under_the_minimum_get_no_verdict():
    segments = ["≤3"] * 5 + ["4-10"] * 55
    values = {"ref": BASE, "good": BASE - 0.5}
    out = paired_differences(per_user(values, segments=segments), [("mse", 0, "good", "ref", "x")], n_boot=200)
    small, big = one(out, segment="users:≤3"), one(out, segment="users:4-10")
    assert small["verdict"] == TOO_FEW and np.isnan(small["ci_low"]) and np.isnan(small["t_p"])
    assert small["n_users"] == 5 and big["verdict"] == BETTER and big["n_users"] == 55


def test_mean_and_typical_user_moving_apart_is_flagged():
    # 45 users slightly worse, 15 users much better: the mean improves, most users lose
    ref = np.ones(60)
    model = np.r_[np.full(45, 1.05), np.full(15, 0.2)] + RNG.normal(0, 0.01, 60)
    row = one(
        paired_differences(per_user({"ref": ref, "m": model}), [("mse", 0, "m", "ref", "x")], n_boot=200), segment="all"
    )
    assert row["diff"] < 0 and row["median_user_diff"] > 0 and row["share_worse"] == pytest.approx(0.75)
    assert row["tests_disagree"]


def test_paired_bootstrap_is_narrower_than_the_unpaired_spread_and_covers_the_difference():
    a, b = BASE + 0.1, BASE  # perfectly paired: the difference is exactly 0.1 in every resample
    lo, hi = paired_bootstrap_ci(a, np.ones(60), b, np.ones(60), n_boot=200)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_the_reference_is_the_best_traditional_model_that_ranks():
    results = pd.DataFrame(
        {
            "model": ["popularity", "bias_als", "lightfm", "lm", "popularity", "bias_als", "lm"],
            "metric": ["ndcg"] * 4 + ["mse"] * 3,
            "k": [10] * 4 + [0] * 3,
            "segment": "all",
            "value": [0.9, 0.2, 0.5, 0.4, 1.2, 0.8, 0.7],
        }
    )
    refs = best_reference(results, ["popularity", "bias_als", "lightfm"], no_ranking={"popularity"})
    assert refs == {("ndcg", 10): "lightfm", ("mse", 0): "bias_als"}
    pairs = comparisons(
        results,
        traditional=["popularity", "bias_als", "lightfm"],
        fusion="lm",
        components={"rating": ["bias_als"], "ranking": ["lightfm", "popularity"]},
        no_ranking={"popularity"},
    )
    assert ("ndcg", 10, "popularity", "lightfm", "vs_best_traditional") not in pairs  # it does not rank
    assert ("ndcg", 10, "lm", "popularity", "vs_component") in pairs
    assert ("mse", 0, "lm", "bias_als", "vs_best_traditional") in pairs


def test_a_model_ranks_nothing_only_when_every_user_saw_constant_scores():
    from models.evaluation.comparisons import ranks_nothing

    assert ranks_nothing({"constant_share": 1.0, "coverage": 0.1})
    assert not ranks_nothing({"constant_share": 0.99}) and not ranks_nothing({}) and not ranks_nothing(None)
