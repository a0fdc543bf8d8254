"""The baselines by hand, their tuning on validation, and parity of the bias baseline with Surprise's BaselineOnly
(the contract every model keeps is tests/test_contract.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import folds, ratings

from models.base import top_k
from models.recommenders.baselines import BiasALS, BiasedMF, GlobalMean, Popularity
from models.tuning import SearchSpace, tune


def test_global_mean_by_hand():
    train = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "x", "y"], "rating": [1.0, 2.0, 6.0]})
    assert GlobalMean().fit(train).predict(["a", "zz"], ["y", "x"]).tolist() == [3.0, 3.0]


def test_popularity_ranks_by_training_count():
    train = pd.DataFrame({"user_id": ["a", "b", "c", "a"], "item_id": ["x", "x", "x", "y"], "rating": 1.0})
    ids, _ = (
        Popularity().fit(train, items=pd.DataFrame({"item_id": ["z"]})).recommend(["b", "new"], k=3, exclude_seen=True)
    )
    assert ids[0].tolist()[:2] == ["y", "z"] and ids[1].tolist() == ["x", "y", "z"]


def test_bias_als_by_hand_without_penalty():
    # Two users, two items, full matrix: r = mu + b_u + b_i fits exactly with reg 0.
    train = pd.DataFrame(
        {"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "y"], "rating": [5.0, 3.0, 4.0, 2.0]}
    )
    model = BiasALS(reg_user=0.0, reg_item=0.0, n_epochs=50).fit(train)
    assert model.predict(train["user_id"], train["item_id"]) == pytest.approx(train["rating"].to_numpy())


def test_bias_als_matches_surprise_baselineonly():
    surprise = pytest.importorskip("surprise")
    train, _, test = folds(ratings(n_users=40, n_items=60, per_user=15))
    ours = BiasALS(reg_user=5.0, reg_item=3.0, n_epochs=10).fit(train)
    data = surprise.Dataset.load_from_df(train[["user_id", "item_id", "rating"]], surprise.Reader(rating_scale=(1, 5)))
    algo = surprise.BaselineOnly(
        bsl_options={"method": "als", "reg_u": 5.0, "reg_i": 3.0, "n_epochs": 10}, verbose=False
    )
    algo.fit(data.build_full_trainset())
    theirs = np.array(
        [algo.predict(u, i, clip=False).est for u, i in zip(test["user_id"], test["item_id"], strict=True)]
    )
    assert ours.predict(test["user_id"], test["item_id"]) == pytest.approx(theirs, abs=1e-9)


def test_tuning_uses_validation():
    train, valid, _ = folds(ratings(n_users=40, n_items=60, per_user=15))
    penalties = (0.0, 5.0, 50.0)
    model = tune(BiasALS(), train, valid, space=SearchSpace(grid={"reg_user": penalties, "reg_item": penalties})).model
    assert model.reg_user_ in (0.0, 5.0, 50.0) and model.reg_item_ in (0.0, 5.0, 50.0)
    rmse = lambda m: np.sqrt(np.mean((m.predict(valid["user_id"], valid["item_id"]) - valid["rating"]) ** 2))  # noqa: E731
    chosen = rmse(model)
    for ru in (0.0, 5.0, 50.0):
        for ri in (0.0, 5.0, 50.0):
            assert chosen <= rmse(BiasALS(reg_user=ru, reg_item=ri).fit(train)) + 1e-12


def test_biased_mf_learns_taste_beyond_biases():
    train, valid, test = folds(ratings(n_users=60, n_items=40, per_user=25), seed=1)
    mf = BiasedMF(max_epochs=10).fit(train, valid)
    bias = BiasALS().fit(train, valid)
    err = lambda m: np.mean((m.predict(test["user_id"], test["item_id"]) - test["rating"]) ** 2)  # noqa: E731
    assert err(mf) < err(bias)


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 1.0, 2.0, 0.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 2, 1]]


def test_review_terms_by_hand_a_missing_summary_adds_no_word():
    import pandas as pd

    from models.recommenders.features import review_terms

    train = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "summary": ["Red strap", None, "red"],
            "review_text": ["red red", "blue strap", "blue"],
        }
    )
    terms = review_terms(train)
    # every word is in two of the three documents (min_df 2); a says red three times, strap once
    assert terms["a"][0] == "review:red" and set(terms["a"]) == {"review:red", "review:strap"}
    assert set(terms["b"]) == {"review:blue", "review:strap"} and set(terms["c"]) == {"review:red", "review:blue"}
    assert review_terms(train.drop(columns=["summary", "review_text"])) == {}
