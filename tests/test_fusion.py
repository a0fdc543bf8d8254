"""Fusion: parity with a single component, learning on validation only, cross-fitted segment weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.base import Recommender
from models.recommenders.fusion import Fusion, FusionConfig, simplex_grid

N_USERS, N_ITEMS = 40, 12


class Table(Recommender):
    """A fixed component: rating(u, i) from a function, catalogue scores from a matrix; records its inputs."""

    def __init__(self, name, rating, scores, tasks=("rating", "ranking")):
        self.name, self._rating, self._scores, self.tasks = name, rating, scores, tasks
        self.asked: list[tuple[str, str]] = []

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


def test_learned_blend_beats_each_component_and_only_reads_validation():
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
