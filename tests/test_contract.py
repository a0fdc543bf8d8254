"""The one contract, over every registered model (``models.registry``): built from the typed config, fitted on
a tiny dataset with review text, each model predicts and/or ranks as its registry entry says, handles cold
users and items, never recommends a seen item, and comes back from a bundle with identical outputs.

The transformer (a tiny randomly initialised BERT, trained in its own process) and the fusion of every model
are slow; the other models run in the fast suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import TINY_BERT, keeps_the_contract, lm_reviews

from models.registry import MODELS, REGISTRY, BuildContext, TrainConfig, build_model
from models.serving.bundle import BundleError, load_model, save_model
from models.tuning import tune

SLOW = {"lm_two_tower", "fusion"}  # the transformer trains in its own process; the fusion blends it
TINY_LM = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
CONFIG = TrainConfig(lightfm_max_epochs=5, lightfm_trials=0, lm_overrides=TINY_LM)


@pytest.fixture(scope="module")
def world():
    """72 reviews of 10 items by 12 users (with text and times) split 80/20, and a catalogue with one item
    nobody rated (it has a title)."""
    data = lm_reviews()
    validation = data.sample(frac=0.2, random_state=1)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)] + ["never_rated"]})
    items["title"] = [f"record {i}" for i in range(11)]
    return data.drop(validation.index), validation[["user_id", "item_id", "rating"]], items


@pytest.fixture(scope="module")
def fitted(world, tmp_path_factory):
    """Each model fitted once, in registry order, when a test first asks for it (the fusion gets every
    model fitted before it as its components)."""
    train, validation, items = world
    work_dir = tmp_path_factory.mktemp("contract")
    models: dict = {}
    records: dict = {}

    def get(name: str):
        if name not in models:
            before = {n: get(n) for n in MODELS[: MODELS.index(name)]} if REGISTRY[name].family == "fusion" else {}
            model = build_model(name, CONFIG, BuildContext("random", work_dir, k=5, components=before))
            tuned = tune(model, train, validation, items=items)  # its search space, judged on validation
            assert type(tuned.model) is type(model) and tuned.model.name == name
            models[name] = tuned.model
            records[name] = tuned.record()
        return models[name]

    get.records = records
    return get


PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in MODELS]


@pytest.mark.parametrize("name", PARAMS)
def test_every_registered_model_keeps_the_contract(name, fitted, world):
    train, validation, _ = world
    model = fitted(name)
    assert type(model) is REGISTRY[name].cls and model.name == name
    keeps_the_contract(model, train, validation)


@pytest.mark.parametrize("name", PARAMS)
def test_every_registered_model_comes_back_from_its_bundle_unchanged(name, fitted, world, tmp_path):
    _, validation, _ = world
    model = fitted(name)
    loaded = load_model(save_model(model, tmp_path / name))
    assert type(loaded) is type(model) and loaded.name == name
    users = np.r_[validation["user_id"].to_numpy(), ["nobody"]]
    items = np.r_[validation["item_id"].to_numpy(), ["never_rated"]]
    if "rating" in model.tasks:
        np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
    if "ranking" in model.tasks:
        np.testing.assert_array_equal(loaded.score(users), model.score(users))
        ids, scores = model.recommend(users[:5], k=3)
        again, again_scores = loaded.recommend(users[:5], k=3)
        assert (again == ids).all()
        np.testing.assert_array_equal(again_scores, scores)


@pytest.mark.parametrize("name", [p for p in PARAMS if p != "fusion" and getattr(p, "values", [p])[0] != "fusion"])
def test_every_model_but_the_fusion_comes_back_from_the_fit_store_as_fitted(name, fitted, world, tmp_path):
    """What the fusion reads of a component restored from the fit store instead of refitted: its predictions,
    scores, hyperparameters (those its tuning and its fit chose) and out-of-fold predictions, all
    identical to the fitted model's; and the model scored on test (refitted on training + validation, or its
    history extended) identical to the one kept."""
    from models.evaluation.harness import known_before_test
    from models.experiment import FitStore, Kept

    train, validation, items = world
    model = fitted(name)
    history = known_before_test(train, validation)
    scored = model.refitted(fitted.records[name]["chosen"], history, items=items)
    store = FitStore(tmp_path / "fits", "split-and-code")
    key = store.key(name, CONFIG)
    values = pd.DataFrame({"model": [name], "num": [1.0]})
    record = {"model": name, "params": {"tuning": fitted.records[name]}, "fit_seconds": 1.5, "extras": {}}
    store.keep(name, Kept(values, record, model, scored), key)
    unfitted = build_model(name, CONFIG, BuildContext("random", tmp_path / "other", k=5))
    kept = store.restore(name, unfitted, key, history)
    restored = kept.chosen
    assert kept.values.equals(values) and kept.fit["fit_seconds"] == 1.5
    users = np.r_[validation["user_id"].to_numpy(), ["nobody"]]
    rated = np.r_[validation["item_id"].to_numpy(), ["never_rated"]]
    for original, again in ((model, restored), (scored, kept.scored)):
        if "rating" in model.tasks:
            np.testing.assert_array_equal(again.predict(users, rated), original.predict(users, rated))
        if "ranking" in model.tasks:
            np.testing.assert_array_equal(again.score(users), original.score(users))
            assert (again.seen_matrix(users) != original.seen_matrix(users)).nnz == 0
    if model.refits_per_fold:  # restored with the configuration its tuning chose, and what its fit chose
        assert (
            restored.with_params(**restored.fold_params()).params() == model.with_params(**model.fold_params()).params()
        )
    fold = np.arange(len(train)) % 3
    oof, oof_again = model.oof_predictions(train, fold, items=items), restored.oof_predictions(train, fold, items=items)
    assert (oof is None) == (oof_again is None)
    if oof is not None:
        np.testing.assert_array_equal(oof_again, oof)
    # another key (another setting, split or code) finds nothing; an altered entry is refitted, not read
    assert store.restore(name, build_model(name, CONFIG, BuildContext("random", tmp_path)), "other", history) is None
    (tmp_path / "fits" / f"{name}-{key}" / "per_user.parquet").write_bytes(b"altered")
    assert store.restore(name, build_model(name, CONFIG, BuildContext("random", tmp_path)), key, history) is None


@pytest.mark.parametrize("name", PARAMS)
def test_a_refit_with_its_chosen_hyperparameters_reproduces_the_model_and_out_of_fold_predictions_cover_training(
    name, fitted, world
):
    """What the fusion's stacked blender learns from: a copy with the tuned model's hyperparameters (and what
    its fit chose, an early-stopped epoch count), fitted on the same training fold without validation, predicts
    exactly as the model (no search); its out-of-fold predictions are finite, one per training rating."""
    train, validation, items = world
    model = fitted(name)
    if model.refits_per_fold:
        assert "rating" in model.tasks
        copy = model.with_params(**model.fold_params()).fit(train, None, items=items)
        np.testing.assert_array_equal(
            copy.predict(validation["user_id"], validation["item_id"]),
            model.predict(validation["user_id"], validation["item_id"]),
        )
    oof = model.oof_predictions(train, np.arange(len(train)) % 3, items=items)
    if model.refits_per_fold or name in ("lm_two_tower", "text_frozen"):  # the text models' readout cross-fits
        assert oof.shape == (len(train),) and np.isfinite(oof).all()
    else:
        assert oof is None


@pytest.mark.parametrize("name", [n for n in MODELS if not REGISTRY[n].reads_text and n not in SLOW])
def test_a_model_registered_as_not_reading_text_ignores_it(name, fitted, world, tmp_path):
    train, validation, items = world
    blank = train.assign(review_text="", summary="")
    again = tune(build_model(name, CONFIG, BuildContext("random", tmp_path, k=5)), blank, validation, items=items).model
    model = fitted(name)
    if "rating" in model.tasks:
        np.testing.assert_array_equal(
            again.predict(validation["user_id"], validation["item_id"]),
            model.predict(validation["user_id"], validation["item_id"]),
        )
    if "ranking" in model.tasks:
        np.testing.assert_array_equal(again.score(["u0", "u3"]), model.score(["u0", "u3"]))


def test_fusion_candidates_follow_the_registry():
    from models.recommenders.fusion import FusionConfig
    from models.registry import fusion_candidates

    assert fusion_candidates("rating") == (
        "lm_two_tower",
        "text_frozen",
        "lightfm_hybrid",
        "bias_als",
        "biased_mf",
        "svd",
        "svdpp",
        "knn_baseline",
    )
    assert fusion_candidates("ranking") == (
        "lm_two_tower",
        "text_frozen",
        "lm_sequential",
        "lightfm_hybrid",
        "lightfm_cf",
        "ease",
        "bpr",
        "implicit_als",
        "sasrec",
        "bert4rec",
        "popularity",
    )
    config = FusionConfig()
    assert config.rating_components == fusion_candidates("rating")
    assert all("rating" in REGISTRY[name].tasks for name in config.rating_components)
    assert all("ranking" in REGISTRY[name].tasks for name in config.ranking_components)


def test_only_registered_models_are_saved_or_loaded(tmp_path, world):
    from models.recommenders.baselines import GlobalMean

    class Unregistered(GlobalMean):
        pass

    train, _, _ = world
    with pytest.raises(BundleError, match="not a registered model"):
        save_model(Unregistered().fit(train), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="unknown model 'slim'; registered: global_mean, bias_als"):
        build_model("slim", CONFIG, BuildContext("random", tmp_path))
