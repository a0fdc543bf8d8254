"""The field's models (Cornac, implicit, Surprise) behind reclab's contract: the exported parameters score
exactly as the library does, tuning uses validation only, versions are recorded, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from builders import folds, ratings

from models.recommenders.field import BPR, EASE, ImplicitALS, SurpriseKNNBaseline, SurpriseSVD, SurpriseSVDpp
from models.tuning import SearchSpace, tune, validation_rmse


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
    model = SurpriseSVDpp(n_factors=4, reg_all=0.05).fit(train, valid)
    cached, trainset = model._library_model
    assert cached.cache_ratings
    plain = SVDpp(n_factors=4, n_epochs=model.n_epochs, reg_all=0.05, random_state=model.seed).fit(trainset)
    for name in ("pu", "qi", "yj", "bu", "bi"):
        assert np.array_equal(getattr(cached, name), getattr(plain, name)), name


def test_svd_is_tuned_on_validation_rmse(data):
    train, valid, _ = data
    grid = ((2, 5.0), (8, 0.02))
    space = SearchSpace(configs=tuple({"n_factors": f, "reg_all": r} for f, r in grid))
    tuned = tune(SurpriseSVD(), train, valid, space=space)
    scores = {}
    for f, r in grid:
        scores[(f, r)] = validation_rmse(SurpriseSVD(n_factors=f, reg_all=r).fit(train, None), valid)
    assert (tuned.model.n_factors_, tuned.model.reg_all_) == min(scores, key=scores.get)
    assert tuned.judge == "rmse" and tuned.score == min(scores.values()) and len(tuned.tried) == 2


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
    tuned = tune(EASE(), train, valid, space=SearchSpace(grid={"lamb": (1.0, 1e6)}))
    assert tuned.model.lamb_ in (1.0, 1e6) and tuned.judge == "ndcg"
    one = EASE(lamb=tuned.model.lamb_).fit(train, None)
    assert np.array_equal(one.B, tuned.model.B)


TUNED = {  # a space whose best configuration is not the last one tried (the tuner must not keep the last fit)
    EASE: ({"lamb": 1e6}, {"lamb": 1.0}),
    BPR: ({"factors": 8, "lambda_reg": 10.0}, {"factors": 4, "lambda_reg": 0.01}),
    ImplicitALS: (
        {"factors": 8, "regularization": 100.0, "alpha": 1.0},
        {"factors": 4, "regularization": 0.1, "alpha": 1.0},
    ),
    SurpriseSVD: ({"n_factors": 4, "reg_all": 0.05}, {"n_factors": 8, "reg_all": 50.0}),
    SurpriseSVDpp: ({"n_factors": 4, "reg_all": 0.05}, {"n_factors": 8, "reg_all": 50.0}),
    SurpriseKNNBaseline: ({"k": 20}, {"k": 1}),
}


@pytest.mark.parametrize("cls", list(TUNED))
def test_a_tuned_model_is_its_best_configuration_fitted_alone(cls, data):
    """The tuner keeps the best configuration's fit: the same arrays as that configuration fitted alone, also
    when it is not the last one tried."""
    train, valid, _ = data
    tuned = tune(cls(), train, valid, space=SearchSpace(configs=TUNED[cls]))
    assert tuned.config == TUNED[cls][0]  # the first of two: kept while the second was fitted
    model, alone = tuned.model, cls(**TUNED[cls][0]).fit(train, valid)
    for name in cls.state_fields:
        if name != "library_":
            assert np.array_equal(getattr(model, name), getattr(alone, name)), name
    if "ranking" in cls.tasks:  # the judge's view: the model scores as the configuration it reports
        assert np.array_equal(model.score(model.user_ids[:5]), alone.score(alone.user_ids[:5]))
    else:
        assert np.array_equal(
            model.predict(valid["user_id"], valid["item_id"]), alone.predict(valid["user_id"], valid["item_id"])
        )
