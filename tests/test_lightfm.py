"""LightFM hybrid: parity with the raw library, the feature-matrix guard, LightFM's own metrics, cold start."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from builders import genre_world

from models.evaluation import EvalConfig
from models.evaluation.harness import ranking_rows
from models.evaluation.metrics import ranking_metrics
from models.recommenders.lightfm_hybrid import LightFMHybrid


def small(**kw):
    return LightFMHybrid(no_components=8, max_epochs=10, eval_every=5, search_trials=0, **kw)


def test_parity_with_raw_lightfm_and_the_pitfall():
    train, items = genre_world()
    model = small().fit(train, items=items)
    users, item_pos = np.arange(5), np.arange(len(model.item_ids))
    uu, ii = np.repeat(users, len(item_pos)), np.tile(item_pos, len(users))
    raw = model.model_.predict(uu, ii, user_features=model.user_features, item_features=model.item_features)
    assert model.score(model.user_ids[users]).ravel() == pytest.approx(raw, rel=1e-5, abs=1e-5)
    # The pitfall: LightFM's predict without the training feature matrices returns other scores, silently.
    assert not np.allclose(model.model_.predict(uu, ii), raw, atol=1e-3)


def test_rating_calibration_is_sklearns_isotonic_regression_on_validation():
    """predict = scikit-learn's IsotonicRegression (clipped) fitted on raw LightFM scores of the validation
    pairs against their ratings, applied to the raw scores of new pairs."""
    from sklearn.isotonic import IsotonicRegression

    data, items = genre_world(n_users=30, per_user=14, seed=1)
    folds = np.random.default_rng(0).integers(0, 3, len(data))
    train, validation, test = data[folds == 0], data[folds == 1], data[folds == 2]
    model = small().fit(train, validation, items=items)

    def raw(frame):
        u, i = model.user_index(frame["user_id"]), model.item_index(frame["item_id"])
        keep = (u >= 0) & (i >= 0)
        scores = model.model_.predict(
            u[keep], i[keep], user_features=model.user_features, item_features=model.item_features
        )
        return frame[keep], scores

    validation, raw_validation = raw(validation)
    test, raw_test = raw(test)
    reference = IsotonicRegression(out_of_bounds="clip").fit(raw_validation, validation["rating"].to_numpy(float))
    predicted = model.predict(test["user_id"], test["item_id"])
    np.testing.assert_allclose(predicted, reference.predict(raw_test), rtol=1e-5, atol=1e-5)
    assert len(np.unique(predicted)) > 2  # a real map, not a constant


def test_guard_refuses_changed_feature_matrices():
    train, items = genre_world()
    model = small().fit(train, items=items)
    model.item_features = sp.identity(model.item_features.shape[0], format="csr", dtype=np.float32)
    with pytest.raises(RuntimeError, match="feature matrices changed"):
        model.score(["u0"])
    with pytest.raises(RuntimeError, match="not fitted"):
        LightFMHybrid().score(["u0"])


def test_bad_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be"):
        LightFMHybrid(loss="hinge")


def test_reproducible_with_one_thread():
    train, items = genre_world()
    a = small(seed=3).fit(train, items=items).score(["u0", "u1"])
    b = small(seed=3).fit(train, items=items).score(["u0", "u1"])
    assert np.array_equal(a, b)


def test_precision_and_auc_match_lightfm_evaluation():
    from lightfm.evaluation import auc_score, precision_at_k

    data, items = genre_world(n_users=30, per_user=14, seed=2)
    rng = np.random.default_rng(0)
    is_test = rng.random(len(data)) < 0.25
    train, test = data[~is_test], data[is_test]
    model = small().fit(train, items=items)
    u, i = model.user_index(test["user_id"]), model.item_index(test["item_id"])
    shape = (len(model.user_ids), len(model.item_ids))
    test_m = sp.coo_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
    train_m = sp.coo_matrix(model._seen)
    feats = {"user_features": model.user_features, "item_features": model.item_features}
    theirs_p = precision_at_k(model.model_, test_m, train_interactions=train_m, k=5, **feats)
    theirs_auc = auc_score(model.model_, test_m, train_interactions=train_m, **feats)
    users = np.unique(u)
    relevant = sp.csr_matrix(test_m)[users]
    ours = ranking_metrics(model.score(model.user_ids[users]), relevant, model._seen[users], 5)
    assert ours["precision"] == pytest.approx(theirs_p, abs=1e-6)
    assert ours["auc"] == pytest.approx(theirs_auc, abs=1e-3)  # LightFM's AUC is float32


def test_content_features_beat_identity_only_on_cold_items():
    data, items = genre_world(n_users=60, n_items=80, per_user=16)
    cold = [f"i{i}" for i in range(60, 80)]  # held out with all their interactions
    train = data[~data["item_id"].isin(cold)]
    test = data[data["item_id"].isin(cold) & (data["rating"] == 5.0)]
    auc = {}
    for content in (False, True):
        model = small(content=content, text_terms=0).fit(train, items=items)
        frame, _ = ranking_rows(model, test, EvalConfig().k, cold_candidates=True)
        auc[content] = frame.loc[frame["metric"] == "auc", "num"].mean()
    assert auc[True] > 0.75 and auc[True] > auc[False] + 0.1


def test_metadata_tokens_by_hand_read_the_fields_the_lm_reads():
    """The hybrid's content features use the same metadata fields as the LM's item profile (title, brand,
    category, genres, tags, and the description's first 300 characters), so their comparison is fair."""
    import pandas as pd

    from models.recommenders.features import metadata_tokens

    items = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "title": ["Blue Guitar Strap", None],
            "brand": ["Fender", None],
            "category": ["Accessories|Straps", None],
            "description": ["Soft leather strap. " + "x" * 300 + " hidden", None],
        }
    )
    tokens = metadata_tokens(items)
    assert tokens == {
        "a": [
            "title:blue",
            "title:guitar",
            "title:strap",
            "brand:fender",
            "category:accessories",
            "category:straps",
            "description:soft",
            "description:leather",
            "description:strap",
            "description:" + "x" * 280,
        ]
    }
