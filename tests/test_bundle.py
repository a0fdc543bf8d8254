"""Model bundles: a fitted fusion and its components, saved as arrays + JSON, load back into models that
predict, score and recommend exactly as the fitted ones; altered or foreign bundles are refused. (Every
registered model's own round trip is in tests/test_contract.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.recommenders.fusion import Fusion
from models.serving.bundle import BundleError, load_model, save_model


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
    # a field added later, with the value that reproduces the older behaviour: the bundle still loads
    before_weight = save_model(fusion.components["lm_two_tower"], tmp_path / "before_weight")
    manifest = json.loads((before_weight / "manifest.json").read_text())
    del manifest["values"]["popularity_weight_"]
    (before_weight / "manifest.json").write_text(json.dumps(manifest))
    old = load_model(before_weight, verify=False)
    assert old.popularity_weight_ == 0.0
    lm_model = fusion.components["lm_two_tower"]
    cosine = lm_model._user_vectors_for(["u1"])[:, : lm_model._dim] @ lm_model._item_vectors[:, : lm_model._dim].T
    np.testing.assert_allclose(old.score(["u1"]), cosine)
    with pytest.raises(FileExistsError):
        save_model(fusion, folder)  # never overwrites a published bundle
