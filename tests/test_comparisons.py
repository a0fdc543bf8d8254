"""Paired differences and their verdicts: the reference chosen on validation, the primary and secondary
families corrected apart, the data card's gates, "better" only when significant, the direction stated, small
segments excluded, the two tests' disagreement flagged, and k-fold units pooled per user."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.evaluation.comparisons import (
    BETTER,
    BY_TEST,
    BY_VALIDATION,
    NOT_JUDGED,
    PRIMARY,
    SAME,
    SECONDARY,
    TOO_FEW,
    WORSE,
    choose_references,
    comparisons,
    judge,
    paired_differences,
    pool_folds,
    pooled_validation,
    unit_differences,
)
from models.evaluation.inference import minimum_detectable_difference, paired_difference
from models.evaluation.stats import holm, paired_bootstrap_ci


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


def judged(frame: pd.DataFrame, family: str = PRIMARY, unit: str = "random_s0", gates=None) -> pd.DataFrame:
    """Measured rows of one unit judged: segment ``all`` in ``family``, the segments secondary."""
    families = np.where(frame["segment"] == "all", family, SECONDARY)
    return judge(frame.assign(family=families, split_id=unit), gates)


def one(frame: pd.DataFrame, **where) -> pd.Series:
    mask = np.logical_and.reduce([frame[c] == v for c, v in where.items()])
    assert mask.sum() == 1
    return frame[mask].iloc[0]


RNG = np.random.default_rng(0)
BASE = RNG.gamma(2.0, 0.5, size=60)


def test_a_clear_gain_is_better_and_a_clear_loss_is_worse():
    values = {"ref": BASE, "good": BASE - 0.3 + RNG.normal(0, 0.05, 60), "bad": BASE + 0.3}
    measured = paired_differences(
        per_user(values), [("mse", 0, "good", "ref", "x"), ("mse", 0, "bad", "ref", "x")], n_boot=200
    )
    out = judged(measured)
    good, bad = one(out, model="good", segment="all"), one(out, model="bad", segment="all")
    assert good["verdict"] == BETTER and good["ci_high"] < 0 and good["diff"] == pytest.approx(-0.3, abs=0.03)
    assert bad["verdict"] == WORSE and bad["ci_low"] > 0 and bad["share_worse"] == 1.0
    assert good["t_p_adj"] >= good["t_p"] and good["family_size"] == 2 and good["correction"] == "holm"
    segment = one(out, model="good", segment="users:4-10")
    assert segment["family"] == SECONDARY and segment["correction"] == "bh" and segment["family_size"] == 2


def test_a_small_noisy_difference_is_no_detectable_difference_with_its_ci_and_detectable_size():
    values = {"ref": BASE, "other": BASE * (1 - 0.002) + RNG.normal(0, 0.2, 60)}
    measured = paired_differences(per_user(values), [("mse", 0, "other", "ref", "x")], n_boot=200)
    row = one(judged(measured), segment="all")
    assert row["verdict"] == SAME and row["ci_low"] < 0 < row["ci_high"]
    # the detectable size: (z_0.975 + z_0.8) * se for a family of one, se = sd of the per-user differences / sqrt(n)
    diffs = values["other"] - values["ref"]
    se = np.std(diffs, ddof=1) / np.sqrt(60)
    assert row["se"] == pytest.approx(se) and row["mdd"] == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)


def test_higher_is_better_for_ranking_metrics():
    values = {"ref": BASE / 10, "up": BASE / 10 + 0.05}
    measured = paired_differences(per_user(values, "ndcg"), [("ndcg", 10, "up", "ref", "x")], n_boot=200)
    row = one(judged(measured), segment="all")
    assert row["verdict"] == BETTER and row["share_better"] == 1.0


def test_segments_under_the_minimum_get_no_verdict():
    segments = ["≤3"] * 5 + ["4-10"] * 55
    values = {"ref": BASE, "good": BASE - 0.5}
    measured = paired_differences(per_user(values, segments=segments), [("mse", 0, "good", "ref", "x")], n_boot=200)
    out = judged(measured, SECONDARY)
    small, big = one(out, segment="users:≤3"), one(out, segment="users:4-10")
    assert small["verdict"] == TOO_FEW and np.isnan(small["ci_low"]) and np.isnan(small["t_p"])
    assert small["n_users"] == 5 and big["verdict"] == BETTER and big["n_users"] == 55
    assert np.isnan(small["mdd"]) and big["correction"] == "bh" and big["family_size"] == 2


def test_mean_and_typical_user_moving_apart_is_flagged():
    # 45 users slightly worse, 15 users much better: the mean improves, most users lose
    ref = np.ones(60)
    model = np.r_[np.full(45, 1.05), np.full(15, 0.2)] + RNG.normal(0, 0.01, 60)
    measured = paired_differences(per_user({"ref": ref, "m": model}), [("mse", 0, "m", "ref", "x")], n_boot=200)
    row = one(judged(measured), segment="all")
    assert row["diff"] < 0 and row["median_user_diff"] > 0 and row["share_worse"] == pytest.approx(0.75)
    assert row["tests_disagree"]


def test_paired_bootstrap_is_narrower_than_the_unpaired_spread_and_covers_the_difference():
    a, b = BASE + 0.1, BASE  # perfectly paired: the difference is exactly 0.1 in every resample
    lo, hi = paired_bootstrap_ci(a, np.ones(60), b, np.ones(60), n_boot=200)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_the_paired_test_of_a_ratio_difference_by_hand():
    # per-user means (den 1): exactly scipy's paired t-test
    a, b = BASE + RNG.normal(0, 0.1, 60), BASE
    ones = np.ones(60)
    test = paired_difference(a, ones, b, ones)
    assert test["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    # MSE over users with 1, 2 and 3 ratings: the difference of Σse/Σn, each user weighing by their ratings
    num_a, num_b, den = np.array([1.0, 3.0, 2.0, 5.0]), np.array([2.0, 2.0, 4.0, 4.0]), np.array([1.0, 2.0, 3.0, 2.0])
    test = paired_difference(num_a, den, num_b, den)
    ra, rb = num_a.sum() / den.sum(), num_b.sum() / den.sum()  # 11/8, 12/8
    assert test["diff"] == pytest.approx(-1 / 8)
    z = ((num_a - ra * den) - (num_b - rb * den)) / den.mean()  # each user's linearised contribution
    se = np.std(z, ddof=1) / 2
    assert test["se"] == pytest.approx(se)
    assert test["t_p"] == pytest.approx(2 * stats.t.sf(abs(-1 / 8 / se), 3))


def test_minimum_detectable_difference_is_the_normal_approximation():
    # (z_{1 - 0.05/4/2} + z_{0.8}) * 0.01, by hand from the normal quantiles
    z_alpha, z_power = stats.norm.ppf(1 - 0.0125 / 2), stats.norm.ppf(0.8)
    assert minimum_detectable_difference(0.01, 0.0125) == pytest.approx((z_alpha + z_power) * 0.01)
    assert z_alpha == pytest.approx(2.4977, abs=1e-4) and z_power == pytest.approx(0.8416, abs=1e-4)
    assert minimum_detectable_difference(0.01, 0.05, power=0.5) == pytest.approx(1.959964 * 0.01, rel=1e-6)


def _unit(values: dict[str, np.ndarray], ranking: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.concat([per_user(values, "mse"), per_user(ranking, "ndcg")], ignore_index=True)


def _fit(model: str, mse: float | None = None, ndcg: float | None = None, **extras) -> dict:
    validation = {}
    if mse is not None:
        validation["mse"] = [mse * 100, 100.0]
    if ndcg is not None:
        validation |= {"ndcg": [ndcg * 50, 50.0], "constant_share": 0.0}
    return {"model": model, "params": {}, "extras": {"validation": validation, **extras}}


def test_the_reference_is_chosen_on_validation_never_on_test():
    # on test, "svd" is the best traditional model; on validation, "biased_mf": the reference is biased_mf
    values = {"svd": BASE, "biased_mf": BASE + 0.05, "lm": BASE + 0.02, "fusion": BASE - 0.01}
    ranking = {"ease": BASE / 10 + 0.02, "popularity": BASE / 10 + 0.05, "lm": BASE / 10, "fusion": BASE / 10 + 0.03}
    fits = [
        _fit("svd", mse=0.80),
        _fit("biased_mf", mse=0.70),
        _fit("ease", ndcg=0.09),
        _fit("popularity", ndcg=0.20, constant_share=1.0),  # ranks nothing on test: never the reference
    ]
    out = unit_differences(
        _unit(values, ranking),
        fits,
        reference_candidates=("svd", "biased_mf", "ease", "popularity"),
        contenders=("lm", "fusion"),
        fusion="fusion",
        components={"rating": ["svd", "biased_mf", "lm"], "ranking": ["ease", "lm"]},
        k=10,
        n_boot=100,
    )
    rating = one(out, metric="mse", model="lm", kind="vs_best_traditional", segment="all")
    assert rating["reference"] == "biased_mf" and rating["test_best"] == "svd"
    assert rating["reference_rule"] == BY_VALIDATION and rating["reference_validation"] == pytest.approx(0.70)
    ranking_row = one(out, metric="ndcg", model="fusion", kind="vs_best_traditional", segment="all")
    assert ranking_row["reference"] == "ease"
    assert not ((out["model"] == "popularity") & (out["k"] == 10)).any()  # it ranks nothing: not compared
    # the family: the contenders against the reference on each task's metric, all users; nothing else
    primary = out[out["family"] == PRIMARY]
    assert set(zip(primary["model"], primary["metric"], strict=True)) == {
        ("lm", "mse"),
        ("fusion", "mse"),
        ("lm", "ndcg"),
        ("fusion", "ndcg"),
    }
    assert (primary["segment"] == "all").all() and (primary["kind"] == "vs_best_traditional").all()
    assert set(out.loc[out["kind"] == "vs_component", "family"]) == {SECONDARY}
    assert set(out.loc[out["model"] == "svd", "family"]) == {SECONDARY}


def test_without_validation_values_the_test_best_is_used_and_said():
    refs = choose_references({("mse", 0): {"a": 0.9, "b": 0.8}}, {}, ["a", "b"])
    assert refs["rating"].model == "b" and refs["rating"].rule == BY_TEST


def test_validation_values_pool_over_folds_as_sums():
    fits = [
        {"model": "m", "extras": {"validation": {"mse": [10.0, 10.0], "ndcg": [1.0, 10.0], "constant_share": 1.0}}},
        {"model": "m", "extras": {"validation": {"mse": [30.0, 10.0], "ndcg": [4.0, 30.0], "constant_share": 0.0}}},
    ]
    pooled = pooled_validation(fits)["m"]
    assert pooled["mse"] == 2.0 and pooled["ndcg"] == pytest.approx(5 / 40)
    assert pooled["constant_share"] == pytest.approx(10 / 40)


def test_holm_runs_within_the_primary_family_only_and_bh_within_the_secondary():
    values = {"ref": BASE, "a": BASE - 0.05 + RNG.normal(0, 0.2, 60), "b": BASE + RNG.normal(0, 0.2, 60)}
    pairs = [("mse", 0, "a", "ref", "x"), ("mse", 0, "b", "ref", "x")]
    measured = paired_differences(per_user(values), pairs, n_boot=100)
    measured = measured[measured["segment"] == "all"]
    primary, secondary = measured.assign(family=PRIMARY), measured.assign(family=SECONDARY)
    out = judge(pd.concat([primary, secondary], ignore_index=True).assign(split_id="random_s0"))
    p_raw = primary["t_p"].to_numpy()
    from statsmodels.stats.multitest import multipletests

    assert out[out["family"] == PRIMARY]["t_p_adj"].to_numpy() == pytest.approx(holm(p_raw))
    assert out[out["family"] == PRIMARY]["t_p_adj"].to_numpy() == pytest.approx(multipletests(p_raw, method="holm")[1])
    assert out[out["family"] == SECONDARY]["t_p_adj"].to_numpy() == pytest.approx(
        multipletests(p_raw, method="fdr_bh")[1]
    )
    # each family's detectable size uses its own size: α / 2 here
    row = out.iloc[0]
    assert row["mdd"] == pytest.approx(minimum_detectable_difference(row["se"], 0.05 / 2))


def test_a_condemned_unit_is_not_judged_and_leaves_the_family():
    # the LM "wins" clearly on a leaking split; a clean split has an ordinary result
    leaking = paired_differences(
        per_user({"ref": BASE, "lm": BASE - 0.5}), [("mse", 0, "lm", "ref", "x")], n_boot=100
    ).assign(family=PRIMARY, split_id="random_s0")
    clean = paired_differences(
        per_user({"ref": BASE, "lm": BASE + RNG.normal(0, 0.2, 60)}), [("mse", 0, "lm", "ref", "x")], n_boot=100
    ).assign(family=PRIMARY, split_id="temporal_s0")
    leaking, clean = (f[f["segment"] == "all"] for f in (leaking, clean))
    both = pd.concat([leaking, clean], ignore_index=True)
    assert one(judge(both), split_id="random_s0", segment="all")["verdict"] == BETTER  # without the card
    gates = {"random_s0": {"rating": "text_twins: 84% of held-out pairs ... What to do: collapse."}}
    out = judge(both, gates)
    withheld = one(out, split_id="random_s0", segment="all")
    assert withheld["verdict"] == NOT_JUDGED and withheld["note"].startswith("text_twins")
    assert np.isnan(withheld["t_p_adj"]) and withheld["family_size"] == 0
    kept = one(out, split_id="temporal_s0", segment="all")
    assert kept["family_size"] == 1 and kept["t_p_adj"] == pytest.approx(kept["t_p"])  # a family of one now


def test_kfold_folds_pool_per_user_and_the_pooled_test_matches_a_hand_computation():
    # two folds; user u0 has 2 test ratings in fold 1 and 1 in fold 2, u1 one in each, u2 only in fold 2
    rows = [
        # split, model, user, segment, num (squared errors), den (ratings)
        ("kfold_s0_f1", "a", "u0", "≤3", 2.0, 2.0),
        ("kfold_s0_f1", "b", "u0", "≤3", 1.0, 2.0),
        ("kfold_s0_f1", "a", "u1", "4-10", 0.5, 1.0),
        ("kfold_s0_f1", "b", "u1", "4-10", 1.5, 1.0),
        ("kfold_s0_f2", "a", "u0", "4-10", 1.0, 1.0),
        ("kfold_s0_f2", "b", "u0", "4-10", 3.0, 1.0),
        ("kfold_s0_f2", "a", "u1", "4-10", 1.0, 1.0),
        ("kfold_s0_f2", "b", "u1", "4-10", 0.0, 1.0),
        ("kfold_s0_f2", "a", "u2", "≤3", 4.0, 1.0),
        ("kfold_s0_f2", "b", "u2", "≤3", 1.0, 1.0),
    ]
    frame = pd.DataFrame(rows, columns=["split_id", "model", "user_id", "user_segment", "num", "den"]).assign(
        metric="mse", k=0, item_segment="all"
    )
    pooled = pool_folds(frame).set_index(["model", "user_id"])
    assert pooled.loc[("a", "u0"), ["num", "den"]].tolist() == [3.0, 3.0]
    assert pooled.loc[("b", "u1"), ["num", "den"]].tolist() == [1.5, 2.0]
    assert pooled.loc[("a", "u1"), "user_segment"] == "4-10" and pooled.loc[("a", "u2"), "user_segment"] == "≤3"
    # each user once: a's MSE (3 + 1.5 + 4) / 6 = 8.5 / 6, b's (4 + 1.5 + 1) / 6 = 6.5 / 6
    measured = paired_differences(pooled.reset_index(), [("mse", 0, "a", "b", "x")], n_boot=100, min_users=2)
    row = one(measured, segment="all")
    assert row["n_users"] == 3 and row["diff"] == pytest.approx(2 / 6)
    num_a, num_b, den = np.array([3.0, 1.5, 4.0]), np.array([4.0, 1.5, 1.0]), np.array([3.0, 2.0, 1.0])
    z = (num_a - 8.5 / 6 * den) - (num_b - 6.5 / 6 * den)  # mean(den) = 2
    se = np.std(z / 2, ddof=1) / np.sqrt(3)
    assert row["se"] == pytest.approx(se) and row["t_p"] == pytest.approx(2 * stats.t.sf((2 / 6) / se, 2))


def test_comparisons_list_every_model_against_its_tasks_reference_and_the_fusion_against_components():
    from models.evaluation.comparisons import Reference

    test_values = {("mse", 0): {"a": 1.0, "b": 0.9, "fusion": 0.8}, ("ndcg", 10): {"c": 0.1, "p": 0.1, "fusion": 0.2}}
    refs = {"rating": Reference("a", BY_VALIDATION, 0.9, "b"), "ranking": Reference("c", BY_VALIDATION, 0.1, "c")}
    pairs = comparisons(
        test_values, refs, fusion="fusion", components={"rating": ["b"], "ranking": ["p"]}, no_ranking={"p"}
    )
    assert ("mse", 0, "b", "a", "vs_best_traditional") in pairs and ("mse", 0, "fusion", "b", "vs_component") in pairs
    assert ("ndcg", 10, "p", "c", "vs_best_traditional") not in pairs  # it ranks nothing
    assert ("ndcg", 10, "fusion", "p", "vs_component") in pairs


def test_a_model_ranks_nothing_only_when_every_user_saw_constant_scores():
    from models.evaluation.comparisons import ranks_nothing

    assert ranks_nothing({"constant_share": 1.0, "coverage": 0.1})
    assert not ranks_nothing({"constant_share": 0.99}) and not ranks_nothing({}) and not ranks_nothing(None)


def test_each_pair_and_segment_reads_the_users_both_models_have_as_a_pivot_table_would():
    """The paired differences read every model's per-user sums once per segment (``_Sums``); each pair's users
    and sums are the ones pandas' pivot table of that pair alone gives (a user missing for one model left
    out, several rows of a user summed), segment by segment, the segments those two
    models' rows reach (a third model's segment adds none)."""
    from models.evaluation.comparisons import _Sums

    rows = pd.DataFrame(
        {
            "model": ["a", "a", "a", "a", "b", "b", "b", "c", "c"],
            "user_id": ["u1", "u1", "u2", "u3", "u1", "u2", "u4", "u1", "u5"],
            "user_segment": ["1-3", "1-3", "4-10", "4-10", "1-3", "4-10", "4-10", "1-3", "11+"],
            "item_segment": ["all", "all", "all", "all", "all", "all", "all", "all", "all"],
            "num": [1.0, 2.0, 0.5, 4.0, 2.0, 3.0, 1.0, 3.0, 1.0],
            "den": [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    sums = _Sums(rows)
    assert sums.segments("mse", ("a", "b")) == ["all", "users:1-3", "users:4-10"]  # c's 11+ is not theirs
    for segment, part in [("all", rows), ("users:1-3", rows[rows["user_segment"] == "1-3"])]:
        pair = part[part["model"].isin(["a", "b"])]
        table = pair.pivot_table(index="user_id", columns="model", values=["num", "den"], aggfunc="sum").dropna()
        expected = (table["num"]["a"], table["den"]["a"], table["num"]["b"], table["den"]["b"])
        for got, want in zip(sums.pair(segment, "a", "b"), expected, strict=True):
            np.testing.assert_array_equal(got, want.to_numpy())
    # by hand: u1 and u2 are the users both have on 'all' (u3 is a's only, u4 b's), a's two rows of u1 summed
    assert [list(x) for x in sums.pair("all", "a", "b")] == [[3.0, 0.5], [2.0, 1.0], [2.0, 3.0], [2.0, 1.0]]
    assert all(len(x) == 0 for x in sums.pair("users:11+", "a", "b"))  # neither model reaches it
