"""Metrics against hand computations, limit cases, and reference implementations (scikit-learn, LightFM)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import ndcg_score, roc_auc_score

from models.evaluation.metrics import (
    catalogue_coverage,
    constant_scores,
    intra_list_diversity,
    item_popularity,
    ndcg_at_k,
    novelty,
    popularity_bias,
    ranking_metrics,
    rating_metrics,
)
from models.evaluation.stats import activity_segment, bootstrap_ci, holm, paired_tests, popularity_segment

SCORES = np.array([[0.9, 0.1, 0.8, 0.3, 0.5]])
RELEVANT = sp.csr_matrix(np.array([[0, 0, 1, 1, 0]]))


def test_rating_metrics_by_hand():
    got = rating_metrics(np.array([4.0, 2.0, 5.0]), np.array([3.0, 2.0, 3.0]))
    assert got == pytest.approx({"rmse": np.sqrt(5 / 3), "mse": 5 / 3, "mae": 1.0})


def test_ranking_by_hand_without_exclusions():
    # order: i0 .9, i2 .8, i4 .5, i3 .3, i1 .1 ; relevant {i2, i3}; top-3 hits [0, 1, 0]
    m = {k: v[0] for k, v in ranking_metrics(SCORES, RELEVANT, None, 3).items()}
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["ndcg"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert m["map"] == pytest.approx((1 / 2) / 2)
    assert m["hit_rate"] == 1.0 and m["mrr"] == pytest.approx(1 / 2)
    assert m["auc"] == pytest.approx(3 / 6)  # (.8>.5, .8>.1, .3>.1) of 2x3 pairs


def test_ranking_by_hand_with_seen_item_excluded():
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0, 0]]))  # i0 was a training item
    m = {k: v[0] for k, v in ranking_metrics(SCORES, RELEVANT, exclude, 3).items()}
    # candidates i2 .8, i4 .5, i3 .3, i1 .1 ; top-3 hits [1, 0, 1]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["ndcg"] == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert m["map"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["mrr"] == 1.0
    assert m["auc"] == pytest.approx(3 / 4)


def test_limit_cases_perfect_and_no_hit():
    relevant = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]]))
    perfect = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.9, 0.0]])
    m = ranking_metrics(perfect, relevant, None, 2)
    for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc"):
        expected = [1.0, 0.5] if name == "precision" else [1.0, 1.0]
        assert m[name] == pytest.approx(expected), name
    worst = -perfect
    m = ranking_metrics(worst, relevant, None, 2)
    for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc"):
        assert m[name] == pytest.approx([0.0, 0.0]), name


def test_constant_scores_get_the_random_list_expectation_in_closed_form():
    # 6 candidates all tied, one relevant (item 5, last by index): every slot holds it with probability 1/6
    scores, relevant = np.zeros((1, 6)), sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1]]))
    m = {k: v[0] for k, v in ranking_metrics(scores, relevant, None, 3).items()}
    discounts = 1 / np.log2(np.arange(2, 5))
    assert m["precision"] == pytest.approx(1 / 6 * 3 / 3)
    assert m["recall"] == pytest.approx(3 / 6) and m["hit_rate"] == pytest.approx(3 / 6)
    assert m["ndcg"] == pytest.approx(discounts.sum() / 6)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 6)
    assert m["map"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 6)
    assert m["auc"] == pytest.approx(0.5)
    assert constant_scores(scores, None).tolist() == [True]


def test_a_tie_group_across_the_cut_off_by_hand():
    # scores: i0 .9 alone, then i1..i4 tied at .5 (i3 relevant), i5 .1 relevant; k = 3
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.5, 0.1]])
    relevant = sp.csr_matrix(np.array([[0, 0, 0, 1, 0, 1]]))
    m = {k: v[0] for k, v in ranking_metrics(scores, relevant, None, 3).items()}
    # slots 2 and 3 each hold i3 with probability 1/4; slot 1 is never a hit
    assert m["precision"] == pytest.approx((1 / 4 + 1 / 4) / 3)
    assert m["hit_rate"] == pytest.approx(1 / 2)  # i3 lands in slot 2 or 3 with probability 2/4
    assert m["mrr"] == pytest.approx(1 / 4 / 2 + 1 / 4 / 3)
    assert m["ndcg"] == pytest.approx((1 / 4 / np.log2(3) + 1 / 4 / np.log2(4)) / (1 + 1 / np.log2(3)))
    assert m["map"] == pytest.approx((1 / 4 / 2 + 1 / 4 / 3) / 2)


def test_ties_never_depend_on_item_order_and_match_every_permutation():
    """Against a brute-force reference: the mean of each metric over every order of the tied items."""
    from itertools import permutations, product

    def by_order(order, rel, k):
        hits = np.array([rel[i] for i in order[:k]] + [False] * (k - len(order[:k])), dtype=float)
        d = 1 / np.log2(np.arange(2, k + 2))
        first = np.flatnonzero(hits)
        n_rel = sum(rel.values())
        return {
            "precision": hits.sum() / k,
            "recall": hits.sum() / n_rel,
            "ndcg": (hits * d).sum() / d[: min(n_rel, k)].sum(),
            "map": (hits * np.cumsum(hits) / np.arange(1, k + 1)).sum() / min(n_rel, k),
            "hit_rate": float(hits.any()),
            "mrr": 1 / (first[0] + 1) if len(first) else 0.0,
        }

    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(3, 8))
        k = int(rng.integers(1, n + 1))
        scores = rng.integers(0, 3, size=n).astype(float)
        exclude = rng.random(n) < 0.2
        rel = (rng.random(n) < 0.4) & ~exclude
        rel[np.flatnonzero(~exclude)[0]] = True
        candidates = np.flatnonzero(~exclude)
        groups = [[i for i in candidates if scores[i] == v] for v in sorted(set(scores[candidates]), reverse=True)]
        orders = [[i for g in perm for i in g] for perm in product(*[permutations(g) for g in groups])]
        truth = {
            name: np.mean([by_order(o, dict(enumerate(rel)), k)[name] for o in orders])
            for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
        }
        ours = ranking_metrics(
            scores[None], sp.csr_matrix(rel[None].astype(float)), sp.csr_matrix(exclude[None].astype(float)), k
        )
        flipped = ranking_metrics(
            scores[None, ::-1],
            sp.csr_matrix(rel[None, ::-1].astype(float)),
            sp.csr_matrix(exclude[None, ::-1].astype(float)),
            k,
        )
        for name, value in truth.items():
            assert ours[name][0] == pytest.approx(value) and flipped[name][0] == pytest.approx(value), name


def test_tied_ndcg_matches_scikit_learn_tie_averaging():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(30, 25)).astype(float)  # many ties
    relevant = (rng.random((30, 25)) < 0.15).astype(float)
    relevant[relevant.sum(axis=1) == 0, 0] = 1.0
    ours = ranking_metrics(scores, sp.csr_matrix(relevant), None, 10)["ndcg"]
    assert ours == pytest.approx([ndcg_score(relevant[u : u + 1], scores[u : u + 1], k=10) for u in range(30)])


def test_constant_scores_flags_only_users_whose_candidates_all_tie():
    scores = np.array([[1.0, 1.0, 5.0], [1.0, 2.0, 3.0]])
    exclude = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0]]))  # user 0's only differing item is excluded
    assert constant_scores(scores, exclude).tolist() == [True, False]


def test_user_without_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(SCORES, sp.csr_matrix((1, 5)), None, 3)


def test_cross_check_with_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 30))
    relevant = (rng.random((40, 30)) < 0.15).astype(float)
    relevant[relevant.sum(axis=1) == 0, 0] = 1.0
    ours = ranking_metrics(scores, sp.csr_matrix(relevant), None, 10)
    assert ours["ndcg"] == pytest.approx([ndcg_score(relevant[u : u + 1], scores[u : u + 1], k=10) for u in range(40)])
    assert ours["auc"] == pytest.approx([roc_auc_score(relevant[u], scores[u]) for u in range(40)])


def test_asking_for_ndcg_alone_gives_the_same_ndcg_and_nothing_else():
    rng = np.random.default_rng(2)
    scores = np.round(rng.random((30, 40)), 1)  # ties included
    relevant = (rng.random((30, 40)) < 0.2).astype(float)
    relevant[:, 0] = 1.0
    exclude = sp.csr_matrix((rng.random((30, 40)) < 0.2) & (relevant == 0))
    full = ranking_metrics(scores, sp.csr_matrix(relevant), exclude, 5)
    alone = ranking_metrics(scores, sp.csr_matrix(relevant), exclude, 5, ("ndcg",))
    assert list(alone) == ["ndcg"]
    assert np.array_equal(alone["ndcg"], full["ndcg"])
    assert np.array_equal(ndcg_at_k(scores, sp.csr_matrix(relevant), exclude, 5), full["ndcg"])
    with pytest.raises(ValueError, match="unknown ranking metrics \\['ndgc'\\]"):
        ranking_metrics(scores, sp.csr_matrix(relevant), exclude, 5, ("ndgc",))


def test_auc_excluding_items_matches_scikit_learn_on_candidates():
    rng = np.random.default_rng(1)
    scores, relevant, exclude = rng.random((20, 25)), np.zeros((20, 25)), rng.random((20, 25)) < 0.3
    for u in range(20):
        candidates = np.flatnonzero(~exclude[u])
        relevant[u, rng.choice(candidates, 3, replace=False)] = 1
    ours = ranking_metrics(scores, sp.csr_matrix(relevant), sp.csr_matrix(exclude.astype(float)), 5)["auc"]
    ref = [roc_auc_score(relevant[u, ~exclude[u]], scores[u, ~exclude[u]]) for u in range(20)]
    assert ours == pytest.approx(ref)


def test_beyond_accuracy_by_hand():
    top = np.array([[0, 1], [0, 2]])
    assert catalogue_coverage(top, 4) == 0.75
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert intra_list_diversity(top, vectors) == pytest.approx([1.0, 0.0])  # orthogonal pair, identical pair
    pop = item_popularity(np.array([3, 1, 0, 0]), n_users=3)  # (c + 1) / 4
    assert pop == pytest.approx([1.0, 0.5, 0.25, 0.25])
    assert novelty(top, pop) == pytest.approx([(0 + 1) / 2, (0 + 2) / 2])
    assert popularity_bias(top, pop) == pytest.approx([0.75, 0.625])


def test_bootstrap_ci_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, 500)
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)
    assert lo < values.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / np.sqrt(500), rel=0.2)
    se, n = rng.random(100), np.ones(100)
    lo_r, hi_r = bootstrap_ci(se, n, sqrt=True)
    assert lo_r < np.sqrt(se.mean()) < hi_r


def test_paired_tests_and_holm():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 200)
    assert paired_tests(a, a)["t_p"] == 1.0
    shifted = paired_tests(a + 0.5, a + rng.normal(0, 0.1, 200))
    assert (
        shifted["t_p"] < 1e-10
        and shifted["wilcoxon_p"] < 1e-10
        and shifted["mean_diff"] == pytest.approx(0.5, abs=0.05)
    )
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == pytest.approx([0.5])


def test_segments_by_hand():
    assert activity_segment(np.array([0, 3, 4, 10, 11, 25, 26])).tolist() == [
        "≤3",
        "≤3",
        "4-10",
        "4-10",
        "11-25",
        "11-25",
        ">25",
    ]
    # 10 warm items, head share 0.2 -> the 2 most popular
    counts = np.array([0, 50, 40, 5, 5, 4, 3, 3, 2, 1, 1])
    assert popularity_segment(counts).tolist() == ["cold", "head", "head"] + ["tail"] * 8
