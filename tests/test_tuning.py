"""The one tuner (models.tuning): candidates in a known order, the best by validation (the earliest on ties),
score-time settings without refitting, nothing scored without validation; and a toy model added in a few
lines (a class with a search space, one registry entry) that keeps the shared contract and is tuned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import keeps_the_contract, lm_reviews

from models.base import Recommender, rows_at
from models.registry import REGISTRY, BuildContext, ModelSpec, TrainConfig, build_model
from models.serving.bundle import load_model, save_model
from models.tuning import SearchSpace, best_of, candidates, random_configs, tune, validation_rmse


# --- the toy model: everything a new model needs (the registry entry is in the test below) -----------------
class ItemMean(Recommender):
    """r̂ = μ + Σ_i (r − μ) / (n_i + shrink): an item's mean residual, shrunk; ranks items by it."""

    name = "item_mean"
    state_fields = ("offset",)
    summary_fields = ("shrink_",)
    refits_per_fold = True

    def __init__(self, shrink: float = 10.0):
        self.shrink = shrink

    def search_space(self) -> SearchSpace:
        return SearchSpace(grid={"shrink": (0.0, 5.0, 50.0)})

    def fit(self, train, validation=None, *, items=None, users=None) -> ItemMean:
        u, i = self._index(train, items)
        residual = train["rating"].to_numpy(np.float64) - self.global_mean
        counts = np.bincount(i, minlength=len(self.item_ids))
        self.offset = np.bincount(i, residual, len(self.item_ids)) / np.maximum(counts + self.shrink, 1e-12)
        self.shrink_ = self.shrink
        return self

    def predict(self, users, items) -> np.ndarray:
        return self.global_mean + rows_at(self.offset, self.item_index(items), 0.0)

    def score(self, users) -> np.ndarray:
        return np.tile(self.offset, (len(users), 1))


@pytest.fixture
def world():
    data = lm_reviews()
    validation = data.sample(frac=0.2, random_state=1)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)] + ["never_rated"]})
    return data.drop(validation.index), validation[["user_id", "item_id", "rating"]], items


def test_a_toy_model_added_with_one_registry_entry_keeps_the_contract_and_is_tuned(world, tmp_path, monkeypatch):
    train, validation, items = world
    spec = ModelSpec("item_mean", "test_tuning:ItemMean", "collaborative", False, lambda cls, config, context: cls())
    monkeypatch.setitem(REGISTRY, "item_mean", spec)
    model = build_model("item_mean", TrainConfig(), BuildContext("random", tmp_path))
    tuned = tune(model, train, validation, items=items)
    rmse = {s: validation_rmse(ItemMean(s).fit(train, validation, items=items), validation) for s in (0.0, 5.0, 50.0)}
    assert tuned.config == {"shrink": min(rmse, key=rmse.get)} and tuned.score == min(rmse.values())
    assert [c for c, _ in tuned.tried] == [{"shrink": s} for s in (0.0, 5.0, 50.0)]
    assert tuned.record() == {"chosen": tuned.config, "validation": {"rmse": round(min(rmse.values()), 6)}, "tried": 3}
    fitted = tuned.model
    assert fitted.name == "item_mean" and fitted.fit_summary() == {"shrink_": tuned.config["shrink"]}
    keeps_the_contract(fitted, train, validation)
    loaded = load_model(save_model(fitted, tmp_path / "bundle"))  # registered: it may be published
    np.testing.assert_array_equal(loaded.score(["u0"]), fitted.score(["u0"]))
    oof = fitted.oof_predictions(train, np.arange(len(train)) % 3, items=items)
    assert oof.shape == (len(train),) and np.isfinite(oof).all()


def test_candidates_grid_listed_random_and_fixed():
    model = ItemMean()
    grid = SearchSpace(grid={"a": (1, 2), "b": ("x", "y")})
    assert candidates(model, grid) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    listed = SearchSpace(configs=({"shrink": 1.0}, {"shrink": 2.0}, {"shrink": 1.0}))
    assert candidates(model, listed) == [{"shrink": 1.0}, {"shrink": 2.0}]  # duplicates dropped, the first kept
    assert candidates(model, SearchSpace()) == [{}]  # the model as built
    axes = {"shrink": (0.0, 5.0, 50.0), "other": (1, 2)}
    draws = random_configs(axes, 3, seed=7)
    rng = np.random.default_rng(7)  # by hand: each axis in order, one uniform index each
    assert draws == [
        {"shrink": axes["shrink"][rng.integers(3)], "other": axes["other"][rng.integers(2)]} for _ in "abc"
    ]
    random = SearchSpace(grid={"shrink": (0.0, 5.0, 50.0)}, trials=4, seed=7, fixed={"shrink": 1.0})
    assert candidates(ItemMean(3.0), random) == [{"shrink": 1.0}]  # every draw fixed to the same: one left
    own_first = candidates(ItemMean(3.0), SearchSpace(grid={"shrink": (0.0, 5.0)}, trials=2, seed=0))
    assert own_first[0] == {"shrink": 3.0} and all(c["shrink"] in (0.0, 5.0) for c in own_first[1:])
    with pytest.raises(ValueError, match="grid or listed"):
        SearchSpace(grid={"a": (1,)}, configs=({"a": 1},))


def test_ties_keep_the_earlier_candidate_and_nothing_is_scored_without_validation(world):
    assert best_of([({}, 1.0), ({}, 0.5), ({}, 0.5)], lower_is_better=True) == 1
    assert best_of([({}, 0.2), ({}, 0.9), ({}, 0.9)], lower_is_better=False) == 1
    train, _, items = world
    tuned = tune(ItemMean(7.0), train, None, items=items)
    assert tuned.config == {} and np.isnan(tuned.score) and tuned.judge is None and tuned.model.shrink == 7.0
    with pytest.raises(ValueError, match="no hyperparameter nope"):
        ItemMean().with_params(nope=1)


def test_score_time_settings_are_tried_on_one_fit(world):
    """``after_fit``: set on the fitted model and judged, never refitted (the LM's popularity weight)."""
    train, validation, items = world
    fits = []

    class Counted(ItemMean):
        scale = 1.0

        def fit(self, *args, **kwargs):
            fits.append(1)
            return super().fit(*args, **kwargs)

        def predict(self, users, items):
            return self.global_mean + self.scale * (super().predict(users, items) - self.global_mean)

    space = SearchSpace(after_fit={"scale": (2.0, 0.0, 1.0)})
    tuned = tune(Counted(), train, validation, items=items, space=space)
    assert len(fits) == 1
    by_scale = {}
    for scale in (0.0, 1.0, 2.0):
        tuned.model.scale = scale
        by_scale[scale] = validation_rmse(tuned.model, validation)
    best = min(by_scale, key=by_scale.get)
    tuned.model.scale = tuned.config["scale"]
    assert tuned.config["scale"] == best and tuned.score == by_scale[best]
