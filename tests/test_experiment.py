"""The experiment loop on one split: fitted models kept in the fit store between runs, so that adding a model
fits only it and the fusion, with the same results as fitting everything afresh."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from builders import genre_world

from models.evaluation import EvalConfig
from models.experiment import FitStore, fit_split
from models.registry import BuildContext, TrainConfig, build_model

FIRST = ("global_mean", "bias_als", "biased_mf", "popularity", "svd", "ease", "fusion")
MORE = ("global_mean", "bias_als", "biased_mf", "popularity", "svd", "knn_baseline", "ease", "fusion")


@pytest.fixture(scope="module")
def split():
    ratings, items = genre_world(n_users=30, n_items=40, per_user=10)
    ratings = ratings.assign(timestamp=range(len(ratings)))
    parts = {
        "train": ratings.iloc[::3].index.union(ratings.iloc[1::3].index),
        "validation": ratings.iloc[2::6].index,
        "test": ratings.iloc[5::6].index,
    }
    data = {fold: ratings.loc[index].reset_index(drop=True) for fold, index in parts.items()}
    for fold in ("validation", "test"):
        data[fold] = data[fold].drop(columns=["summary", "review_text"])
    data["items"], data["users"] = items, pd.DataFrame({"user_id": sorted(ratings["user_id"].unique())})
    return data


def run(split, models, tmp_path, store=None, caplog=None):
    config = TrainConfig(models=models, lightfm_trials=0)
    return fit_split(split, "random", "random_s0", config, EvalConfig(k=5, n_boot=100), tmp_path, store)


def test_adding_a_model_fits_only_it_and_the_fusion(split, tmp_path, caplog):
    store = FitStore(tmp_path / "fits", "the split, its protocol, the code")
    first = run(split, FIRST, tmp_path / "a", store)
    assert not any(f["extras"].get("reused") for f in first.fits)
    with caplog.at_level(logging.INFO, logger="reclab.experiment"):
        second = run(split, MORE, tmp_path / "b", store)
    reused = {f["model"] for f in second.fits if f["extras"].get("reused")}
    assert reused == set(FIRST) - {"fusion"}  # everything but the new model and the fusion came from the store
    fitting = [r.getMessage() for r in caplog.records if ": fitting " in r.getMessage()]
    assert [m.split(": fitting ")[1].split(" (")[0] for m in fitting] == ["knn_baseline", "fusion"]
    # the same results as every model fitted afresh: restored components, the same fusion
    fresh = run(split, MORE, tmp_path / "c")
    columns = ["model", "metric", "k", "user_id", "item_segment"]
    got = second.per_user.sort_values(columns).reset_index(drop=True)
    want = fresh.per_user.sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    fusion = next(f for f in second.fits if f["model"] == "fusion")
    assert fusion["params"] == next(f for f in fresh.fits if f["model"] == "fusion")["params"]


def test_an_unchanged_rerun_restores_every_model_and_the_fusion_and_refresh_refits_them(split, tmp_path, caplog):
    store = FitStore(tmp_path / "fits", "the split, its protocol, the code")
    first = run(split, FIRST, tmp_path / "a", store)
    assert any(p.name.startswith("fusion-") for p in (tmp_path / "fits").iterdir())  # the fusion is kept too
    with caplog.at_level(logging.INFO, logger="reclab.experiment"):
        again = run(split, FIRST, tmp_path / "b", store)
    assert not [r for r in caplog.records if ": fitting " in r.getMessage()]  # nothing refitted
    assert {f["model"] for f in again.fits if f["extras"].get("reused")} == set(FIRST)
    columns = ["model", "metric", "k", "user_id", "item_segment"]
    got = again.per_user.sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, first.per_user.sort_values(columns).reset_index(drop=True))
    # the restored fusion blends the restored scored components as the fresh one did: the same predictions
    users, items = split["test"]["user_id"], split["test"]["item_id"]
    np.testing.assert_array_equal(
        again.models["fusion"].predict(users, items), first.models["fusion"].predict(users, items)
    )
    assert set(again.models["fusion"].components) == set(first.models["fusion"].components)
    # a component's fit changed (its own entry gone): the fusion is refitted with it, the rest restored
    for entry in (tmp_path / "fits").glob("bias_als-*"):
        import shutil

        shutil.rmtree(entry)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reclab.experiment"):
        run(split, FIRST, tmp_path / "c", store)
    fitting = [
        r.getMessage().split(": fitting ")[1].split(" (")[0] for r in caplog.records if ": fitting " in r.getMessage()
    ]
    assert fitting == ["bias_als"]  # the same fit again: the same key, so the kept fusion still matches it
    # refresh: every model refitted, and the store's entries replaced
    refreshed = FitStore(tmp_path / "fits", "the split, its protocol, the code", refresh=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reclab.experiment"):
        fresh = run(split, FIRST, tmp_path / "d", refreshed)
    assert not any(f["extras"].get("reused") for f in fresh.fits)
    fitting = [
        r.getMessage().split(": fitting ")[1].split(" (")[0] for r in caplog.records if ": fitting " in r.getMessage()
    ]
    assert sorted(fitting) == sorted(FIRST)
    pd.testing.assert_frame_equal(
        fresh.per_user.sort_values(columns).reset_index(drop=True),
        first.per_user.sort_values(columns).reset_index(drop=True),
    )


def test_the_diversity_vectors_are_made_only_for_a_fresh_fit(split, tmp_path, monkeypatch):
    """Intra-list diversity's item vectors (TF-IDF + SVD, seconds on a real split) are made once per split where a
    model is fitted, and not at all where every fit is restored (its stored values hold its diversity)."""
    import models.experiment

    made = []
    real = models.experiment.diversity_vectors
    monkeypatch.setattr(models.experiment, "diversity_vectors", lambda *a: made.append(1) or real(*a))
    store = FitStore(tmp_path / "fits", "the split, its protocol, the code")
    first = run(split, FIRST, tmp_path / "a", store)
    assert len(made) == 1 and (first.per_user["metric"] == "diversity").any()
    run(split, FIRST, tmp_path / "b", store)
    assert len(made) == 1  # every model restored: none made


def test_a_changed_setting_refits_every_model(split, tmp_path):
    store = FitStore(tmp_path / "fits", "the split, its protocol, the code")
    run(split, FIRST, tmp_path / "a", store)
    config = TrainConfig(models=FIRST, lightfm_trials=0, seed=1)
    again = fit_split(split, "random", "random_s0", config, EvalConfig(k=5, n_boot=100), tmp_path / "b", store)
    assert not any(f["extras"].get("reused") for f in again.fits)
    other = FitStore(tmp_path / "fits", "another split or code")
    third = run(split, FIRST, tmp_path / "c", other)
    assert not any(f["extras"].get("reused") for f in third.fits)


@pytest.mark.slow
def test_the_lm_trains_in_its_own_process_beside_the_other_fits_with_the_same_results(split, tmp_path, caplog):
    from builders import TINY_BERT

    tiny = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
    models = ("global_mean", "bias_als", "lm_two_tower", "text_frozen", "fusion")
    runs = {}
    for overlap in (True, False):
        config = TrainConfig(models=models, lightfm_trials=0, lm_overrides=tiny, overlap=overlap)
        with caplog.at_level(logging.INFO):
            runs[overlap] = fit_split(
                split, "random", "random_s0", config, EvalConfig(k=5, n_boot=100), tmp_path / str(overlap)
            )
    fits = {f["model"]: f for f in runs[True].fits}
    assert [f["model"] for f in runs[True].fits] == list(models)  # recorded in registry order all the same
    # text_frozen is a language model too, but fits in this process, beside the LM's trainer
    assert fits["lm_two_tower"]["extras"]["overlapped_with"] == ["global_mean", "bias_als", "text_frozen"]
    assert fits["bias_als"]["extras"]["overlapped_with"] == ["lm_two_tower"]
    assert fits["text_frozen"]["extras"]["overlapped_with"] == ["lm_two_tower"]
    assert "overlapped_with" not in fits["fusion"]["extras"]
    for f in runs[True].fits + runs[False].fits:  # wall and CPU seconds of every fit
        assert f["fit_seconds"] > 0 and f["extras"]["cpu_seconds"] >= 0
    lm = fits["lm_two_tower"]
    assert lm["extras"]["cpu_seconds"] > 1  # the trainer process's own CPU time, not this process's
    assert not any("overlapped_with" in f["extras"] for f in runs[False].fits)
    columns = ["model", "metric", "k", "user_id", "item_segment"]
    got = runs[True].per_user.sort_values(columns).reset_index(drop=True)
    want = runs[False].per_user.sort_values(columns).reset_index(drop=True)
    # the trainer's thread count is fixed for the whole fit, so beside the others or alone: the same numbers
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_the_trainers_thread_count_is_fixed_by_its_settings_never_by_the_machines_load(monkeypatch):
    from models.lm.config import LMConfig
    from models.lm.train import trainer_threads

    assert trainer_threads(LMConfig(num_threads=3)) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert trainer_threads(LMConfig()) == 4  # half the cores: the other half for the fits beside it
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert trainer_threads(LMConfig()) == 1
    with pytest.raises(ValueError):
        LMConfig(num_threads=-1)


def test_encoder_variants_are_named_apart_built_with_their_encoder_and_refit_nothing_else(tmp_path):
    from models.registry import BuildContext, build_model, encoder_variants, run_models

    config = TrainConfig(lm_encoders=("/models/bert-base-uncased", "sentence-transformers/all-mpnet-base-v2"))
    names = list(encoder_variants(config))
    assert names == ["lm_two_tower@bert-base-uncased", "lm_two_tower@all-mpnet-base-v2"]
    order = run_models(config)
    assert order[order.index("lm_two_tower") + 1 : order.index("lm_two_tower") + 3] == tuple(names)
    assert order[-1] == "fusion"
    model = build_model(names[1], config, BuildContext("random", tmp_path))
    assert model.name == names[1] and model.config().encoder == "sentence-transformers/all-mpnet-base-v2"
    assert model.work_dir == tmp_path / "variants" / "all-mpnet-base-v2" / "lm_two_tower"  # a folder of its own
    store = FitStore(tmp_path / "fits", "the split")
    plain = TrainConfig()
    # adding encoder variants changes no other model's fit-store key; each variant's key is its own
    assert store.key("lm_two_tower", config) == store.key("lm_two_tower", plain)
    assert store.key(names[0], config) != store.key(names[1], config)
    with pytest.raises(ValueError, match="add it to the models"):
        TrainConfig(models=("bias_als",), lm_encoders=("x",))


@pytest.mark.slow
def test_two_encoder_variants_on_a_tiny_model_get_their_own_rows(split, tmp_path):
    from builders import TINY_BERT

    tiny = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1}
    config = TrainConfig(
        models=("global_mean", "lm_two_tower", "fusion"), lm_overrides=tiny, lm_encoders=("tiny-a", "tiny-b")
    )
    fitted = fit_split(split, "random", "random_s0", config, EvalConfig(k=5, n_boot=100), tmp_path)
    names = [f["model"] for f in fitted.fits]
    assert names == ["global_mean", "lm_two_tower", "lm_two_tower@tiny-a", "lm_two_tower@tiny-b", "fusion"]
    for name in names:
        assert len(fitted.per_user[fitted.per_user["model"] == name]) > 0
    # the fusion blends the registered LM only
    assert "lm_two_tower@tiny-a" not in str(fitted.fits[-1]["params"])


# --- everything known before the test: the refit on training + validation -------------------------------------
def test_the_model_scored_on_test_knows_the_validation_interactions_and_never_a_test_one(split, tmp_path, monkeypatch):
    """Each model's settings are chosen on validation from a training-only fit; the model scored on test is
    refitted on training + validation with them (a canary: no fit ever sees a test pair), and its candidates
    exclude the validation items as well as the training ones."""
    from models.recommenders.field import EASE

    seen_by_fits = []
    original_fit = EASE.fit

    def spying_fit(self, train, validation=None, **kwargs):
        seen_by_fits.append((set(zip(train["user_id"], train["item_id"], strict=True)), validation is None))
        return original_fit(self, train, validation, **kwargs)

    monkeypatch.setattr(EASE, "fit", spying_fit)
    out = run(split, ("popularity", "ease", "fusion"), tmp_path)
    pairs = {
        fold: set(zip(split[fold]["user_id"], split[fold]["item_id"], strict=True))
        for fold in split
        if fold in ("train", "validation", "test")
    }
    tuning, refit = [s for s, no_validation in seen_by_fits if not no_validation], [s for s, n in seen_by_fits if n]
    assert tuning and all(s == pairs["train"] for s in tuning)  # chosen on validation from training-only fits
    assert refit == [pairs["train"] | pairs["validation"]]  # one refit, on everything before the test
    assert all(not (s & pairs["test"]) for s, _ in seen_by_fits)  # the canary: no fit sees a test pair
    scored = out.models["ease"]
    val = split["validation"]
    seen = scored.seen_matrix(val["user_id"])
    assert seen[range(len(val)), scored.item_index(val["item_id"])].min() == 1  # the history holds validation
    test = split["test"]
    assert (
        seen.shape[0]
        and scored.seen_matrix(test["user_id"])[range(len(test)), scored.item_index(test["item_id"])].max() == 0
    )
    record = next(f for f in out.fits if f["model"] == "ease")["extras"]
    assert record["test_time"] == "refit" and record["refit_seconds"] >= 0


def test_the_fusion_learns_its_weights_from_training_only_fits_and_scores_with_the_refits(split, tmp_path):
    """Stacking as it is done: the weights are learned on validation from the components' training-only fits
    (the same weights as a fusion built on them by hand), then applied to the refitted components."""
    from models.evaluation.harness import known_before_test
    from models.recommenders.fusion import Fusion
    from models.tuning import tune

    out = run(split, ("popularity", "ease", "fusion"), tmp_path)
    fused = out.models["fusion"]
    history = known_before_test(split["train"], split["validation"])
    for name in ("popularity", "ease"):
        assert fused.components[name] is out.models[name]  # the refitted components
        assert fused.components[name].item_counts.sum() == len(history)
    by_hand = {}
    for name in ("popularity", "ease"):
        model = build_model(name, TrainConfig(models=("popularity", "ease")), BuildContext("random", tmp_path, k=5))
        by_hand[name] = tune(model, split["train"], split["validation"], items=split["items"]).model
    weights = Fusion(by_hand, {"k": 5}).fit(split["train"], split["validation"], items=split["items"]).ranking_weights_
    assert fused.ranking_weights_ == weights
    users = split["test"]["user_id"].unique()
    again = Fusion(dict(out.models), {"k": 5}, ranking_weights=weights).fit(history, None, items=split["items"])
    np.testing.assert_allclose(fused.score(users), again.score(users))


def test_the_sequential_models_are_fitted_on_their_protocols_only():
    """SASRec and BERT4Rec join a split of ``sequential_protocols`` (leave-last-out by default), not the others."""
    from models.registry import run_models

    config = TrainConfig(models=("popularity", "ease", "sasrec", "bert4rec", "fusion"))
    assert run_models(config, "temporal") == ("popularity", "ease", "sasrec", "bert4rec", "fusion")
    assert run_models(config, "kfold") == ("popularity", "ease", "fusion")
    wider = config.model_copy(update={"sequential_protocols": ("temporal", "kfold")})
    assert run_models(wider, "kfold") == ("popularity", "ease", "sasrec", "bert4rec", "fusion")


def test_a_model_too_costly_for_the_catalogue_is_skipped_with_its_reason_and_the_rest_run(split, tmp_path, caplog):
    from models.recommenders.field import EASE

    assert EASE().too_costly(split["train"], split["items"]) is None  # 40 items: far below its limit
    EASE.MAX_ITEMS = 10
    try:
        reason = EASE().too_costly(split["train"], split["items"])
        with caplog.at_level(logging.WARNING, logger="reclab.experiment"):
            out = run(split, FIRST, tmp_path)
    finally:
        EASE.MAX_ITEMS = 12_000
    # 40 items: 40² pairs x 58 bytes
    assert reason == (
        "ease skipped: 40 items, and its dense items x items matrices would take about 0 GiB (it runs up to 10 items)"
    )
    assert any(reason in r.getMessage() for r in caplog.records)
    ease = next(f for f in out.fits if f["model"] == "ease")
    assert ease["extras"] == {"skipped": reason} and [f["model"] for f in out.fits] == list(FIRST)
    assert "ease" not in set(out.per_user["model"]) and "ease" not in out.models
    assert {"global_mean", "bias_als", "fusion"} <= set(out.per_user["model"])  # the others, the fusion too
