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


@pytest.mark.parametrize("cls", [EASE, BPR, ImplicitALS, SurpriseSVD, SurpriseSVDpp, SurpriseKNNBaseline])
def test_an_empty_training_fold_is_refused_clearly(cls, data):
    train, _, _ = data
    with pytest.raises(ValueError, match="cannot fit on an empty training set"):
        cls().fit(train.iloc[:0])
