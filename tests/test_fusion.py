"""Fusion: parity with a single component, learning without test, cross-fitted segment weights, the stacked
blender on out-of-fold training predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.base import Recommender
from models.recommenders.fusion import Fusion, FusionConfig, simplex_grid

N_USERS, N_ITEMS = 40, 12


class Table(Recommender):
    """A fixed component: rating(u, i) from a function, catalogue scores from a matrix; records its inputs."""

    def __init__(self, name, rating, scores, tasks=("rating", "ranking"), oof=None):
        self.name, self._rating, self._scores, self.tasks, self._oof = name, rating, scores, tasks, oof
        self.asked: list[tuple[str, str]] = []
        self.oof_asked: list[tuple[str, str]] = []

    def oof_predictions(self, train, fold, *, items=None, users=None):
        """``oof(u, i)`` of the training rows (a stand-in for refits on the other folds), if given."""
        if self._oof is None:
            return None
        self.oof_asked += list(zip(train["user_id"], train["item_id"], strict=True))
        return np.array([self._oof(int(u[1:]), int(i[1:])) for u, i in zip(train.user_id, train.item_id, strict=True)])

    def fit(self, train, validation=None, *, items=None, users=None):
        self._index(train, items)
        return self

    def predict(self, users, items):
        users, items = np.asarray(users, dtype=str), np.asarray(items, dtype=str)
        self.asked += list(zip(users, items, strict=True))
        return np.array([self._rating(int(u[1:]), int(i[1:])) for u, i in zip(users, items, strict=True)])

    def score(self, users):
        return self._scores[self.user_index(users)]


def frames(seed=0):
    """Every user rated 3 training items; validation and test hold one (user, item) each, other items."""
    rng = np.random.default_rng(seed)
    rows = {"train": [], "validation": [], "test": []}
    for u in range(N_USERS):
        chosen = rng.permutation(N_ITEMS)[:5]
        for fold, items in (("train", chosen[:3]), ("validation", chosen[3:4]), ("test", chosen[4:5])):
            rows[fold] += [{"user_id": f"u{u}", "item_id": f"i{i}", "rating": float(1 + (u * i) % 5)} for i in items]
    return {k: pd.DataFrame(v) for k, v in rows.items()}


def components(data, truth):
    rng = np.random.default_rng(1)
    a = lambda u, i: truth(u, i) + 0.8 * np.sin(3 * u + i)  # noqa: E731  two noisy views of the truth with
    b = lambda u, i: truth(u, i) - 0.8 * np.sin(3 * u + i)  # noqa: E731  opposite errors: their mean is exact
    relevant = np.zeros((N_USERS, N_ITEMS))
    for row in data["validation"].itertuples():
        relevant[int(row.user_id[1:]), int(row.item_id[1:])] = 1.0
    perfect, noise = relevant + 0.01 * rng.random(relevant.shape), rng.random(relevant.shape)
    out = {"lm_two_tower": Table("lm_two_tower", a, noise), "bias_als": Table("bias_als", b, perfect)}
    for model in out.values():
        model.fit(data["train"])
    return out


def truth_of(data):
    ratings = {(r.user_id, r.item_id): r.rating for f in data.values() for r in f.itertuples()}
    return lambda u, i: ratings.get((f"u{u}", f"i{i}"), 3.0)


def test_weight_one_on_a_component_reproduces_it_exactly():
    data = frames()
    parts = components(data, truth_of(data))
    fused = Fusion(
        parts,
        FusionConfig(ranking_components=("lm_two_tower", "bias_als")),
        rating_weights={"lm_two_tower": 1.0},
        ranking_weights={"lm_two_tower": 1.0},
    ).fit(data["train"])
    test = data["test"]
    lo, hi = data["train"]["rating"].min(), data["train"]["rating"].max()
    expected = np.clip(parts["lm_two_tower"].predict(test.user_id, test.item_id), lo, hi)
    np.testing.assert_array_equal(fused.predict(test.user_id, test.item_id), expected)
    users = np.array([f"u{u}" for u in range(N_USERS)])
    assert (fused.recommend(users, 5)[0] == parts["lm_two_tower"].recommend(users, 5)[0]).all()


def test_learned_blend_beats_each_component_and_never_reads_test():
    data = frames()
    parts = components(data, truth_of(data))
    fused = Fusion(parts, FusionConfig(ranking_components=("lm_two_tower", "bias_als"))).fit(
        data["train"], data["validation"]
    )
    weights = fused.rating_weights_["global"]
    assert weights["lm_two_tower"] == pytest.approx(0.5, abs=0.1) and weights["bias_als"] == pytest.approx(0.5, abs=0.1)
    # fit asked the components about validation pairs only: no test pair reached the blender
    validation_pairs = set(zip(data["validation"].user_id, data["validation"].item_id, strict=True))
    assert all(set(p.asked) <= validation_pairs for p in parts.values())
    test = data["test"]
    mse = {
        name: np.mean((m.predict(test.user_id, test.item_id).clip(1, 5) - test.rating) ** 2)
        for name, m in {**parts, "fusion": fused}.items()
    }
    assert mse["fusion"] < 0.2 * min(mse["lm_two_tower"], mse["bias_als"])
    # ranking: the validation-perfect component gets the weight
    assert fused.ranking_weights_["bias_als"] > fused.ranking_weights_["lm_two_tower"]
    assert fused.validation_ndcg_["fusion"] >= max(
        fused.validation_ndcg_["bias_als"], fused.validation_ndcg_["lm_two_tower"]
    )


def test_cross_fitting_picks_segment_weights_when_segments_differ():
    data = frames()
    truth = truth_of(data)
    # users u0..u19 are rated exactly by lm_two_tower, the others by bias_als: the activity segments differ
    extra = pd.DataFrame(
        [{"user_id": f"u{u}", "item_id": f"i{i}", "rating": 3.0} for u in range(20) for i in range(N_ITEMS)]
    )
    data["train"] = pd.concat([data["train"], extra]).drop_duplicates(["user_id", "item_id"], keep="first")
    busy = lambda u: u < 20  # noqa: E731
    parts = {
        "lm_two_tower": Table("lm_two_tower", lambda u, i: truth(u, i) if busy(u) else 3.0, None, ("rating",)),
        "bias_als": Table("bias_als", lambda u, i: 3.0 if busy(u) else truth(u, i), None, ("rating",)),
    }
    for m in parts.values():
        m.fit(data["train"])
    fused = Fusion(parts).fit(data["train"], data["validation"])
    assert np.isfinite(fused.blender_["segment_alpha"])
    assert fused.cv_[min(fused.cv_, key=fused.cv_.get)] < min(v for k, v in fused.cv_.items() if "inf" in k)


def test_fit_refuses_missing_validation_and_foreign_catalogues():
    data = frames()
    parts = components(data, truth_of(data))
    with pytest.raises(ValueError, match="validation"):
        Fusion(parts).fit(data["train"], None)
    other = Table("bias_als", lambda u, i: 3.0, None).fit(data["train"].iloc[:5])
    with pytest.raises(ValueError, match="catalogue"):
        Fusion({**parts, "bias_als": other}).fit(data["train"], data["validation"])


def test_simplex_grid():
    grid = simplex_grid(3, 30)
    assert len(grid) <= 30 and np.allclose(grid.sum(axis=1), 1) and (grid >= 0).all()
    np.testing.assert_array_equal(grid[:3], np.eye(3)[[2, 1, 0]])  # the vertices come first
    assert len(np.unique(grid, axis=0)) == len(grid)
    assert simplex_grid(1, 10).tolist() == [[1.0]]


def test_a_single_component_wins_when_blending_does_not_pay():
    data = frames()
    truth = truth_of(data)
    parts = {
        "lm_two_tower": Table("lm_two_tower", truth, None, ("rating",)),  # exact
        "bias_als": Table("bias_als", lambda u, i: 3.0 + np.sin(u * i), None, ("rating",)),
    }
    for m in parts.values():
        m.fit(data["train"])
    fused = Fusion(parts).fit(data["train"], data["validation"])
    assert fused.blender_["single"] == "lm_two_tower" and fused.cv_["only=lm_two_tower"] == 0.0
    test = data["test"]
    np.testing.assert_array_equal(
        fused.predict(test.user_id, test.item_id), parts["lm_two_tower"].predict(test.user_id, test.item_id)
    )


def test_the_stacked_blender_learns_from_every_training_rating_out_of_fold():
    """Two components with errors e and -2e: the best blend is 2/3 · a + 1/3 · b. Validation holds 4 ratings
    (too few to find that: its blenders are shrunk towards equal weights); the out-of-fold predictions of
    the 120 training ratings find it. A third component without out-of-fold predictions gets weight 0."""
    data = frames()
    truth = truth_of(data)
    data["validation"] = data["validation"].iloc[:4]
    error = lambda u, i: 0.8 * np.sin(3 * u + i)  # noqa: E731
    a = lambda u, i: truth(u, i) + error(u, i)  # noqa: E731
    b = lambda u, i: truth(u, i) - 2 * error(u, i)  # noqa: E731
    parts = {
        "lm_two_tower": Table("lm_two_tower", a, None, ("rating",), oof=a),
        "bias_als": Table("bias_als", b, None, ("rating",), oof=b),
        "biased_mf": Table("biased_mf", lambda u, i: 3.0, None, ("rating",)),
    }
    for m in parts.values():
        m.fit(data["train"])
    fused = Fusion(parts, FusionConfig(folds=2)).fit(data["train"], data["validation"])
    assert fused.blender_["kind"] == "stacked" and fused.blender_["rows"] == len(data["train"])
    assert fused.blender_["components"] == ["lm_two_tower", "bias_als"]
    # the global weights by the documented formula: ridge (α_g = 1) towards (0, 1/2, 1/2) on the clipped
    # out-of-fold predictions of the 120 training rows (the clipping to the 1-5 scale moves them from 2/3, 1/3)
    train = data["train"]
    design = np.column_stack(
        [np.ones(len(train))]
        + [
            np.clip([f(int(u[1:]), int(i[1:])) for u, i in zip(train.user_id, train.item_id, strict=True)], 1, 5)
            for f in (a, b)
        ]
    )
    prior = np.array([0.0, 0.5, 0.5])
    expected = np.linalg.solve(design.T @ design + np.eye(3), design.T @ train["rating"].to_numpy() + prior)
    weights = fused.rating_weights_["global"]
    assert fused.blender_["global_alpha"] == 1.0
    np.testing.assert_allclose([weights[n] for n in ("intercept", "lm_two_tower", "bias_als")], expected)
    assert weights["biased_mf"] == 0.0
    best_validation_blender = min(v for k, v in fused.cv_.items() if k.startswith("validation:"))
    assert fused.blender_["validation_mse"] < 0.5 * best_validation_blender
    # out-of-fold predictions were asked for training rows only, predictions for validation rows only
    train_pairs = set(zip(data["train"].user_id, data["train"].item_id, strict=True))
    validation_pairs = set(zip(data["validation"].user_id, data["validation"].item_id, strict=True))
    assert all(set(p.oof_asked) <= train_pairs and set(p.asked) <= validation_pairs for p in parts.values())
    test = data["test"]
    mse = {
        name: np.mean((m.predict(test.user_id, test.item_id).clip(1, 5) - test.rating) ** 2)
        for name, m in {**parts, "fusion": fused}.items()
    }
    assert mse["fusion"] < 0.1 and mse["fusion"] < 0.5 * min(mse["lm_two_tower"], mse["bias_als"])


def test_stacking_off_uses_validation_blenders_only():
    data = frames()
    truth = truth_of(data)
    parts = {
        "lm_two_tower": Table("lm_two_tower", truth, None, ("rating",), oof=truth),
        "bias_als": Table("bias_als", lambda u, i: 3.0, None, ("rating",), oof=lambda u, i: 3.0),
    }
    for m in parts.values():
        m.fit(data["train"])
    fused = Fusion(parts, FusionConfig(stacking_folds=0)).fit(data["train"], data["validation"])
    assert not any(k.startswith("stacked:") for k in fused.cv_) and not parts["bias_als"].oof_asked


def test_out_of_fold_predictions_come_from_refits_that_never_saw_the_row():
    from models.recommenders.baselines import BiasALS

    data = frames()
    train = data["train"]
    model = BiasALS().fit(train, data["validation"])
    fold = np.arange(len(train)) % 3
    oof = model.oof_predictions(train, fold)
    for f in range(3):
        held = fold == f
        alone = BiasALS(reg_user=model.reg_user_, reg_item=model.reg_item_).fit(train[~held])
        np.testing.assert_allclose(oof[held], alone.predict(train.user_id[held], train.item_id[held]))
    # a held-out row's own rating never reaches its prediction; the other folds' ratings do
    changed = train.assign(rating=np.where(fold == 0, 5.0, train["rating"]))
    again = model.oof_predictions(changed, fold)
    np.testing.assert_array_equal(again[fold != 0] != oof[fold != 0], np.ones((fold != 0).sum(), bool))
    np.testing.assert_allclose(
        again[fold == 0],
        model.oof_predictions(train.assign(rating=np.where(fold == 0, 1.0, train["rating"])), fold)[fold == 0],
    )
    with pytest.raises(ValueError, match="fold has"):
        model.oof_predictions(train, fold[:-1])
