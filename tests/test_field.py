"""The field's models (Cornac, implicit, Surprise) behind reclab's contract: the exported parameters score
exactly as the library does, tuning uses validation only, versions are recorded, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from builders import folds, ratings

from models.recommenders.field import BPR, EASE, ImplicitALS, SurpriseKNNBaseline, SurpriseSVD, SurpriseSVDpp


@pytest.fixture(scope="module")
def data():
    return folds(ratings(n_users=40, n_items=30, per_user=12))


@pytest.mark.parametrize("cls", [SurpriseSVD, SurpriseSVDpp, SurpriseKNNBaseline])
def test_surprise_predictions_equal_the_librarys(cls, data):
    train, valid, test = data
    model = cls().fit(train, valid)
    algo, trainset = model._library_model
    users, items = test["user_id"].astype(str), test["item_id"].astype(str)
    ours = model.predict(users, items)
    # Surprise's raw ids are reclab's positions; unknown ones stay unknown to both
    u, i = model.user_index(users), model.item_index(items)
    theirs = [
        algo.predict(a if a >= 0 else "?", b if b >= 0 else "?", clip=False).est for a, b in zip(u, i, strict=True)
    ]
    assert ours == pytest.approx(np.array(theirs), abs=1e-9)
    assert model.library_.startswith("scikit-surprise ")


def test_svdpp_with_cached_ratings_learns_what_surprise_learns_without(data):
    from surprise import SVDpp

    train, valid, _ = data
    model = SurpriseSVDpp(grid=((4, 0.05),)).fit(train, valid)
    cached, trainset = model._library_model
    assert cached.cache_ratings
    plain = SVDpp(n_factors=4, n_epochs=model.n_epochs, reg_all=0.05, random_state=model.seed).fit(trainset)
    for name in ("pu", "qi", "yj", "bu", "bi"):
        assert np.array_equal(getattr(cached, name), getattr(plain, name)), name


def test_svd_is_tuned_on_validation_rmse(data):
    train, valid, _ = data
    grid = ((2, 5.0), (8, 0.02))
    chosen = SurpriseSVD(grid=grid).fit(train, valid)
    scores = {}
    for config in grid:
        alone = SurpriseSVD(grid=(config,)).fit(train, None)
        scores[config] = alone._rmse(valid)
    assert (chosen.n_factors_, chosen.reg_all_) == min(scores, key=scores.get)


@pytest.mark.parametrize("cls", [EASE, BPR])
def test_cornac_scores_equal_the_librarys(cls, data):
    train, valid, _ = data
    model = cls().fit(train, valid)
    library, dataset = model._library_model
    for raw, inner in list(dataset.uid_map.items())[:10]:
        user = model.user_ids[int(raw)]
        ours = model.score([user])[0]
        known = np.array([int(r) for r in dataset.item_ids])
        assert ours[known] == pytest.approx(
            np.asarray(library.score(inner), dtype=np.float64).ravel(), rel=1e-5, abs=1e-6
        )
    assert model.library_.startswith("cornac ")


def test_implicit_scores_equal_the_librarys(data):
    train, valid, _ = data
    model = ImplicitALS().fit(train, valid)
    library, user_items = model._library_model
    for user in range(5):
        ids, scores = library.recommend(user, user_items[user], N=len(model.item_ids), filter_already_liked_items=False)
        assert model.score([model.user_ids[user]])[0][ids] == pytest.approx(scores, rel=1e-5, abs=1e-6)
    assert model.library_.startswith("implicit ")


def test_ease_lambda_is_chosen_by_validation_ndcg(data):
    train, valid, _ = data
    model = EASE(lambdas=(1.0, 1e6)).fit(train, valid)
    assert model.lamb_ in (1.0, 1e6)
    one = EASE(lambdas=(model.lamb_,)).fit(train, None)
    assert np.array_equal(one.B, model.B)


TUNED = {  # a grid whose best configuration is not the last one tried (the model must not hold the last fit)
    EASE: ("lambdas", (1e6, 1.0), "lamb_"),
    BPR: ("grid", ((8, 10.0), (4, 0.01)), ("factors_", "lambda_reg_")),
    ImplicitALS: ("grid", ((8, 100.0, 1.0), (4, 0.1, 1.0)), ("factors_", "regularization_", "alpha_")),
    SurpriseSVD: ("grid", ((4, 0.05), (8, 50.0)), ("n_factors_", "reg_all_")),
    SurpriseSVDpp: ("grid", ((4, 0.05), (8, 50.0)), ("n_factors_", "reg_all_")),
    SurpriseKNNBaseline: ("ks", (20, 1), "k_"),
}


@pytest.mark.parametrize("cls", list(TUNED))
def test_a_tuned_model_is_its_best_configuration_fitted_alone(cls, data):
    """Tuning keeps the best configuration's fit instead of refitting it: the same arrays as that
    configuration fitted alone, also when it is not the last one tried."""
    train, valid, _ = data
    field, grid, chosen = TUNED[cls]
    model = cls(**{field: grid}).fit(train, valid)
    names = chosen if isinstance(chosen, tuple) else (chosen,)
    best = tuple(getattr(model, name) for name in names)
    best = best if isinstance(chosen, tuple) else best[0]
    assert best == grid[0]  # the first of two: restored after the second was fitted
    alone = cls(**{field: (best,)}).fit(train, valid)
    for name in cls.state_fields:
        if name != "library_":
            assert np.array_equal(getattr(model, name), getattr(alone, name)), name
    if "ranking" in cls.tasks:  # the judge's view: the model scores as the configuration it reports
        assert np.array_equal(model.score(model.user_ids[:5]), alone.score(alone.user_ids[:5]))
    else:
        assert np.array_equal(
            model.predict(valid["user_id"], valid["item_id"]), alone.predict(valid["user_id"], valid["item_id"])
        )


@pytest.mark.parametrize("cls", [EASE, BPR, ImplicitALS, SurpriseSVD, SurpriseSVDpp, SurpriseKNNBaseline])
def test_an_empty_training_fold_is_refused_clearly(cls, data):
    train, _, _ = data
    with pytest.raises(ValueError, match="cannot fit on an empty training set"):
        cls().fit(train.iloc[:0])
