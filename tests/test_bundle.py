"""Model bundles: a fitted fusion and its components, saved as arrays + JSON, load back into models that
predict, score and recommend exactly as the fitted ones; altered or foreign bundles are refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.baselines import BiasALS, BiasedMF, GlobalMean, Popularity
from models.bundle import BundleError, load_model, save_model
from models.fusion import Fusion, FusionConfig
from models.lightfm_hybrid import LightFMHybrid
from models.lm_recommender import LMTwoTower
from tests.test_lightfm import genre_world


def fake_lm(tmp_path, train, items) -> LMTwoTower:
    """An LM loaded from trainer outputs written by hand (seeded vectors, a random readout)."""
    rng = np.random.default_rng(3)
    out = tmp_path / "lm" / "out"
    out.mkdir(parents=True)
    users = np.sort(train["user_id"].unique()).astype(str)
    item_ids = np.sort(items["item_id"].unique()).astype(str)
    dim = 4
    np.savez(
        out / "embeddings.npz",
        user_ids=users,
        user_vectors=rng.normal(size=(len(users), 2 * dim)),
        item_ids=item_ids,
        item_vectors=rng.normal(size=(len(item_ids), 2 * dim)),
        unknown_user_vector=rng.normal(size=2 * dim),
        unknown_item_vector=rng.normal(size=2 * dim),
        user_stats=np.column_stack([rng.integers(1, 30, len(users)) * 4.0, rng.integers(1, 8, len(users))]),
        item_stats=np.column_stack([rng.integers(1, 30, len(item_ids)) * 4.0, rng.integers(1, 8, len(item_ids))]),
    )
    np.savez(
        out / "readout.npz",
        weights=rng.normal(size=6 * dim) * 0.1,
        bias=np.float64(3.0),
        alpha=np.float64(10),
        stat_weights=rng.normal(size=10) * 0.1,
        stat_bias=np.float64(0.5),
        stat_alpha=np.float64(10),
        mean=np.float64(4.0),
    )
    (out / "metrics.json").write_text(json.dumps({"best_val_rmse": 1.0}))
    model = LMTwoTower(tmp_path / "lm", profile=None)
    model._index(train, items)
    model._load(out)
    return model


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    train, items = genre_world()
    rng = np.random.default_rng(0)
    validation = train.sample(frac=0.2, random_state=0)
    train = train.drop(validation.index)
    validation = validation.assign(rating=validation["rating"] + rng.normal(0, 0.3, len(validation)))
    components = {
        "global_mean": GlobalMean(),
        "popularity": Popularity(),
        "bias_als": BiasALS(),
        "biased_mf": BiasedMF(),
        "lightfm_hybrid": LightFMHybrid(content=True, max_epochs=10, search_trials=0),
    }
    for model in components.values():
        model.fit(train, validation, items=items)
    components["lm_two_tower"] = fake_lm(tmp_path_factory.mktemp("lm"), train, items)
    fusion = Fusion(components, FusionConfig(grid_points=20)).fit(train, validation, items=items)
    return fusion, train, validation


def test_a_loaded_bundle_predicts_scores_and_recommends_as_the_fitted_models(fitted, tmp_path):
    fusion, train, validation = fitted
    loaded = load_model(save_model(fusion, tmp_path / "bundle"))
    assert type(loaded) is Fusion and sorted(loaded.components) == sorted(fusion.components)
    users = np.r_[validation["user_id"].to_numpy(), ["nobody"]]
    items = np.r_[validation["item_id"].to_numpy(), ["i0"]]
    for name, model in [("fusion", fusion), *fusion.components.items()]:
        again = loaded if name == "fusion" else loaded.components[name]
        if "rating" in model.tasks:
            np.testing.assert_allclose(again.predict(users, items), model.predict(users, items), err_msg=name)
        if "ranking" in model.tasks:
            np.testing.assert_allclose(again.score(users), model.score(users), err_msg=name)
            ids, scores = model.recommend(users[:5], k=4)
            ids2, scores2 = again.recommend(users[:5], k=4)
            assert (ids2 == ids).all(), name
            np.testing.assert_allclose(scores2, scores)
    assert loaded.rating_weights_ == fusion.rating_weights_ and loaded.ranking_weights_ == fusion.ranking_weights_


def test_the_bundle_holds_no_pickle(fitted, tmp_path):
    fusion, _, _ = fitted
    folder = save_model(fusion, tmp_path / "bundle")
    for npz in folder.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as arrays:  # raises on any object (pickled) array
            assert all(arrays[key].dtype != object for key in arrays.files)


def test_an_altered_or_foreign_bundle_is_refused(fitted, tmp_path):
    fusion, _, _ = fitted
    folder = save_model(fusion, tmp_path / "bundle")
    npz = folder / "components" / "bias_als" / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="bias_als.*checksum"):
        load_model(folder)
    other = save_model(fusion.components["bias_als"], tmp_path / "single")
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "class": "os.system"}))
    with pytest.raises(BundleError, match="unknown model class 'os.system'"):
        load_model(other)
    with pytest.raises(BundleError, match="not a model bundle"):
        load_model(tmp_path)
    lm = save_model(fusion.components["lm_two_tower"], tmp_path / "old_lm")  # one an older reclab wrote
    manifest = json.loads((lm / "manifest.json").read_text())
    del manifest["values"]["_user_stats"]
    (lm / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no _user_stats: published by an older reclab"):
        load_model(lm, verify=False)
    with pytest.raises(FileExistsError):
        save_model(fusion, folder)  # never overwrites a published bundle


def test_lightfm_calibration_matches_sklearn_isotonic():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.integers(1, 6, 200).astype(float)
    iso = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    grid = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(np.interp(grid, iso.X_thresholds_, iso.y_thresholds_), iso.predict(grid))


def test_single_models_round_trip(fitted, tmp_path):
    fusion, _, validation = fitted
    model = fusion.components["biased_mf"]
    loaded = load_model(save_model(model, tmp_path / "mf"))
    assert loaded.factors_ == model.factors_ and isinstance(loaded.user_ids, np.ndarray)
    pairs = validation.head(7)
    np.testing.assert_allclose(
        loaded.predict(pairs["user_id"], pairs["item_id"]), model.predict(pairs["user_id"], pairs["item_id"])
    )
    assert isinstance(pd.Index(loaded.item_ids), pd.Index)
