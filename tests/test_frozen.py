"""text_frozen: the LM's encoder without fine-tuning. Its vectors are those of the untouched encoder, it reads
training text only, its text cache spares a second fit every forward pass, and it stands in the registry as
the LM's ablation (judged against it, a primary question)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import TINY_BERT, lm_reviews

from models.lm.frozen import TextFrozen
from models.lm.profiles import EMPTY_ITEM

OVERRIDES = {"encoder_config": TINY_BERT, "max_length": 32, "folds": 2, "readout_folds": 2}


def split(data: pd.DataFrame):
    validation = data.groupby("user_id").head(1)
    return data.drop(validation.index), validation


def fresh_vector(text: str) -> np.ndarray:
    """The normalised mean-pooled vector of ``text`` from a freshly built (seeded) tiny encoder."""
    import torch
    from transformers import AutoTokenizer

    from models.lm.network import build_encoder, mean_pool, resolve_encoder

    torch.manual_seed(0)
    encoder = build_encoder("minilm", TINY_BERT).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    encoded = tokenizer([text], truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        vector = mean_pool(encoder(**encoded)[0], encoded["attention_mask"]).numpy()[0]
    return vector / np.linalg.norm(vector)


def test_frozen_vectors_are_the_untouched_encoders_and_it_reads_training_text_only(tmp_path):
    train, validation = split(lm_reviews())
    model = TextFrozen(None, OVERRIDES, k=3).fit(train, validation)
    # no weight updated: the unknown item's vector is what a freshly built encoder gives for the empty profile
    np.testing.assert_allclose(model._unknown_item, fresh_vector(EMPTY_ITEM), atol=1e-5)
    predictions = model.predict(validation["user_id"], validation["item_id"])
    assert np.isfinite(predictions).all() and model.score(["u0", "nobody"]).shape == (2, len(model.item_ids))
    # validation's review texts are never read: a canary there changes nothing
    canary = validation.assign(review_text="CANARY zebra xylophone " + validation["review_text"])
    again = TextFrozen(None, OVERRIDES, k=3).fit(train, canary)
    np.testing.assert_array_equal(again._user_vectors, model._user_vectors)
    np.testing.assert_array_equal(again.predict(validation["user_id"], validation["item_id"]), predictions)
    # the readout's out-of-fold predictions of the training pairs, for the fusion's stacking
    assert np.isfinite(model.oof_predictions(train, None)).all()


def test_the_text_cache_spares_a_second_fit_every_forward_pass(tmp_path):
    train, validation = split(lm_reviews())
    first = TextFrozen(None, OVERRIDES, k=3, text_cache=tmp_path / "cache").fit(train, validation)
    second = TextFrozen(None, OVERRIDES, k=3, text_cache=tmp_path / "cache").fit(train, validation)
    assert first.metrics_["encoded"] == first.metrics_["pieces"] > 0 and first.metrics_["cached"] == 0
    assert second.metrics_["encoded"] == 0 and second.metrics_["cached"] == first.metrics_["pieces"]
    # cached in float16: the same vectors to float16's precision
    np.testing.assert_allclose(second._user_vectors, first._user_vectors, atol=2e-3)


def test_registered_as_the_lms_ablation_and_judged_against_it():
    from models.evaluation.comparisons import ABLATION, comparisons
    from models.registry import ABLATIONS, CONTENDERS, LANGUAGE, REGISTRY, fusion_candidates

    assert ABLATIONS["text_frozen"] == "lm_two_tower" and "text_frozen" in LANGUAGE
    assert "text_frozen" not in CONTENDERS and "lm_two_tower" in CONTENDERS  # judged against the LM instead
    assert "text_frozen" in fusion_candidates("rating") and REGISTRY["text_frozen"].reads_text

    class Ref:
        model = "svd"

    values = {("mse", 0): {"svd": 0.8, "lm_two_tower": 0.7, "text_frozen": 0.75}}
    pairs = comparisons(values, {"rating": Ref()}, fusion=None, components={}, ablations=ABLATIONS)
    assert ("mse", 0, "lm_two_tower", "text_frozen", ABLATION) in pairs


@pytest.mark.parametrize("protocol, dropout", [("random", None), ("cold_items", 0.25)])
def test_cold_item_splits_train_both_text_models_with_item_dropout(tmp_path, protocol, dropout):
    from models.registry import BuildContext, TrainConfig, build_model

    context = BuildContext(protocol=protocol, work_dir=tmp_path)
    for name in ("lm_two_tower", "text_frozen"):
        model = build_model(name, TrainConfig(), context)
        assert model.config().item_metadata_dropout == (dropout or 0.0)
