"""The LM recommender: leave-fold-out profiles, no leakage into tokens, Lightning training (fast run, the
real CPU DDP launcher with 2 processes, resume after a kill), and the real MiniLM offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from builders import TINY_BERT, lm_reviews

from models.lm.data import Collate, PairDataModule, ProfileTokens
from models.lm.profiles import EMPTY_ITEM, EMPTY_USER, FULL, METADATA_ONLY, build_profiles

CANARY = "zqxcanaryjv"


def tiny_module(tokenizer, data, validation: int = 10, test: int = 0, **settings) -> PairDataModule:
    """A data module over ``data`` (training pairs with text), its first ``validation`` / ``test`` rows as
    those folds; 32 tokens and 8 pairs per batch unless ``settings`` say otherwise."""
    frames = {"train": data, "validation": data.head(validation), "test": data.head(test)}
    return PairDataModule(
        {k: v[["user_id", "item_id", "rating"]] for k, v in frames.items()},
        settings.pop("profiles", None) or build_profiles(data),
        tokenizer,
        **{"max_length": 32, "batch_size": 8, **settings},
    )


def test_training_pairs_never_see_their_own_review():
    train = lm_reviews()
    profiles = build_profiles(train, max_reviews=50, folds=2)
    for row in train.itertuples():
        fold = profiles.pair_fold.loc[(row.user_id, row.item_id)]
        own = f"review by {row.user_id} of {row.item_id} "
        assert own not in profiles.user(row.user_id, fold) and own not in profiles.item(row.item_id, fold)
        assert own in profiles.user(row.user_id, FULL) and own in profiles.item(row.item_id, FULL)


def test_a_user_with_one_review_gets_an_empty_training_profile():
    train = pd.DataFrame(
        {
            "user_id": ["a"],
            "item_id": ["x"],
            "rating": [5.0],
            "timestamp": [1],
            "summary": ["s"],
            "review_text": ["only review"],
        }
    )
    profiles = build_profiles(train)
    fold = profiles.pair_fold.loc[("a", "x")]
    assert profiles.user("a", fold) == EMPTY_USER and "only review" in profiles.user("a", FULL)


def test_rating_history_leads_the_profile_and_skips_the_pairs_own_rating():
    train = pd.DataFrame(
        {
            "user_id": ["a", "a", "a"],
            "item_id": ["x", "y", "z"],
            "rating": [4.0, 3.5, 5.0],
            "timestamp": [1, 2, 3],
            "summary": ["sx", "sy", "sz"],
            "review_text": ["", "", ""],
        }
    )
    profiles = build_profiles(train, folds=3, rating_history=2, seed=0)
    assert profiles.user("a") == "ratings: 5 3.5. sz | sy | sx"  # most recent first, two ratings kept
    assert profiles.item("y") == "ratings: 3.5. sy"
    for item, own in (("x", "4"), ("y", "3.5"), ("z", "5")):
        fold = profiles.pair_fold.loc[("a", item)]
        others = train[
            (profiles.pair_fold.loc[list(zip(train.user_id, train.item_id, strict=True))] != fold).to_numpy()
        ]
        expected = " ".join(f"{r:g}" for r in others.sort_values("timestamp", ascending=False).rating.head(2))
        assert profiles.user("a", fold).startswith(f"ratings: {expected}." if expected else EMPTY_USER)
        assert profiles.item(item, fold) == EMPTY_ITEM  # the item's only review is the pair's own
        assert own not in expected.split()  # ratings are distinct here: the pair's own rating is never shown
    assert "ratings" not in build_profiles(train).user("a")  # off by default


def test_profiles_carry_the_rating_statistics_of_their_reviews_leave_fold_out():
    train = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "y", "z", "x"],
            "rating": [4.0, 3.5, 5.0, 2.0],
            "timestamp": [1, 2, 3, 4],
            "summary": ["s"] * 4,
            "review_text": [""] * 4,
        }
    )
    profiles = build_profiles(train, folds=3, max_reviews=1, seed=0)
    assert profiles.rating_stats(("user", "a", FULL)) == (12.5, 3)  # every review, not only those shown
    assert profiles.rating_stats(("item", "x", FULL)) == (6.0, 2)
    assert profiles.rating_stats(("user", "nobody", FULL)) == (0.0, 0)
    for row in train.itertuples():
        fold = profiles.pair_fold.loc[(row.user_id, row.item_id)]
        others = train[
            (train.user_id == row.user_id)
            & (profiles.pair_fold.loc[list(zip(train.user_id, train.item_id, strict=True))] != fold).to_numpy()
        ]
        assert profiles.rating_stats(("user", row.user_id, fold)) == (others.rating.sum(), len(others))


def test_stat_features_by_hand():
    from models.lm.readout import STAT_SHRINKS, stat_features

    features = stat_features([[12.0, 3], [0.0, 0]], mean=3.0)  # mean rating 4: deviation 1 from 3
    np.testing.assert_allclose(features[0], [3 / (3 + k) for k in STAT_SHRINKS] + [np.log(4)])
    np.testing.assert_allclose(features[1], 0.0)  # no ratings: no deviation


def test_the_readout_reads_rating_statistics_first_then_the_vectors():
    """Ratings = 3 + user deviation + item-vector effect + noise; the user's deviation shows only in their
    profile's statistics (leave-fold-out, like training pairs'), the item effect only in the vectors."""
    from models.lm.readout import apply_readout, fit_readout

    rng = np.random.default_rng(0)
    n_users, n_items, dim = 300, 40, 8
    deviation, item_vec = rng.normal(0, 0.8, n_users), rng.normal(size=(n_items, dim))
    effect = item_vec @ rng.normal(0, 0.3, dim)

    class Pairs:
        def __init__(self, n):
            self.users, self.items = rng.integers(0, n_users, n), n_users + rng.integers(0, n_items, n)
            self.ratings = 3 + deviation[self.users] + effect[self.items - n_users] + rng.normal(0, 0.3, n)

    pairs = {"train": Pairs(6000), "validation": Pairs(1500)}
    count = rng.integers(1, 6, n_users)  # each user's profile: `count` ratings with their deviation, noisy
    stats = np.vstack(
        [
            np.column_stack([count * (3 + deviation + rng.normal(0, 0.3 / np.sqrt(count))), count]),
            np.zeros((n_items, 2)),
        ]
    )
    vectors = np.vstack([np.ones((n_users, dim)), item_vec]).astype(np.float32)
    readout = fit_readout(vectors, stats, pairs, np.full(1500, 3.0))
    test = Pairs(3000)
    predicted = apply_readout(readout, vectors[test.users], vectors[test.items], stats[test.users], stats[test.items])
    mse = np.mean((predicted - test.ratings) ** 2)
    assert readout["stats_val_mse"] < np.var(test.ratings) - 0.5  # the statistics carry the user deviation
    assert mse < 0.7 * readout["stats_val_mse"] and readout["val_mse"] < 0.7 * readout["stats_val_mse"]
    assert mse < 0.15  # noise 0.09, plus the user deviations estimated from a few noisy ratings


def test_readout_falls_back_to_the_statistics_where_the_vectors_hurt_validation():
    """Validation items whose vectors mean the opposite of what training taught (the shift of cold items, whose
    vectors read metadata only): the vector stage is dropped, so the readout predicts with the statistics
    alone, in and out of fold, and its validation MSE is the statistics'."""
    from models.lm.readout import apply_readout, cross_fit_readout, fit_readout, pair_stat_features

    rng = np.random.default_rng(1)
    n_users, n_items, dim = 50, 30, 4
    vectors = np.vstack([np.zeros((n_users, dim)), rng.normal(size=(n_items, dim))]).astype(np.float32)
    effect = vectors[n_users:] @ np.ones(dim)

    class Pairs:
        def __init__(self, n, sign):
            self.users, self.items = rng.integers(0, n_users, n), n_users + rng.integers(0, n_items, n)
            self.ratings = 3 + sign * 0.5 * effect[self.items - n_users] + rng.normal(0, 0.3, n)

    pairs = {"train": Pairs(800, +1), "validation": Pairs(300, -1)}
    stats = np.column_stack([np.full(n_users + n_items, 12.0), np.full(n_users + n_items, 4.0)])
    readout = fit_readout(vectors, stats, pairs, [])
    assert not readout["vector_stage"] and readout["vector_val_mse"] > readout["stats_val_mse"]
    assert readout["val_mse"] == readout["stats_val_mse"] and not readout["weights"].any()
    users, items = pairs["validation"].users, pairs["validation"].items
    stats_only = pair_stat_features(stats[users], stats[items], float(readout["mean"])) @ readout["stat_weights"]
    predicted = apply_readout(readout, vectors[users], vectors[items], stats[users], stats[items])
    np.testing.assert_allclose(predicted, stats_only + readout["stat_bias"])
    oof = cross_fit_readout(vectors, stats, pairs, 4, 0, (float(readout["stat_alpha"]), float(readout["alpha"])))
    # every statistic is the same: out of fold, a pair's prediction is the mean rating of the other folds
    assert np.isfinite(oof).all() and np.ptp(oof) < 0.2 and abs(oof.mean() - pairs["train"].ratings.mean()) < 0.05

    pairs["validation"] = Pairs(300, +1)  # the same relation as in training: the vectors are kept
    kept = fit_readout(vectors, stats, pairs, [])
    assert kept["vector_stage"] and kept["val_mse"] < 0.5 * kept["stats_val_mse"]


def test_cross_fitted_readout_never_reads_the_rating_it_predicts():
    """Out-of-fold readout predictions of training pairs: a pair's own rating never changes its prediction
    (any other fold's ratings do), and they track the ratings as an in-sample readout would; the fast Gram
    path equals fitting each fold's readout afresh."""
    from models.lm.readout import cross_fit_readout

    rng = np.random.default_rng(0)
    n_profiles, dim = 60, 4
    vectors = rng.normal(size=(n_profiles, dim)).astype(np.float32)
    stats = np.column_stack([rng.integers(1, 5, n_profiles) * 4.0, np.full(n_profiles, 4.0)])

    class Pairs:
        def __init__(self, n, ratings=None):
            self.users, self.items = rng.integers(0, 30, n), rng.integers(30, 60, n)
            signal = np.einsum("nd,nd->n", vectors[self.users], vectors[self.items])
            self.ratings = 3 + signal + rng.normal(0, 0.3, n) if ratings is None else ratings

    pairs = {"train": Pairs(400), "validation": Pairs(100)}
    oof = cross_fit_readout(vectors, stats, pairs, folds=4, seed=0, strengths=(10.0, 100.0))
    assert oof.shape == (400,) and np.isfinite(oof).all()
    assert np.corrcoef(oof, pairs["train"].ratings)[0, 1] > 0.8
    fold = np.random.default_rng(0).integers(0, 4, 400)  # the folds cross_fit_readout draws (seed 0)
    changed = pairs["train"]
    original = changed.ratings.copy()
    changed.ratings = np.where(fold == 0, 5.0, original)
    again = cross_fit_readout(vectors, stats, pairs, folds=4, seed=0, strengths=(10.0, 100.0))
    changed.ratings = np.where(fold == 0, 1.0, original)
    moved = cross_fit_readout(vectors, stats, pairs, folds=4, seed=0, strengths=(10.0, 100.0))
    np.testing.assert_allclose(moved[fold == 0], again[fold == 0])
    assert (np.abs(again[fold != 0] - oof[fold != 0]) > 1e-9).all()
    changed.ratings = original
    from models.lm.readout import fit_ridge, pair_stat_features, readout_features

    held, rest = fold == 1, fold != 1  # fold 1 by hand, centring the rest's features explicitly
    X = readout_features(vectors[changed.users], vectors[changed.items])
    Z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)  # standardised over every training pair
    u, i, y = changed.users, changed.items, original
    S = pair_stat_features(stats[u[rest]], stats[i[rest]], y[rest].mean())
    first = fit_ridge(S, y[rest], S[:0], y[:0], (10.0,))
    residual = y[rest] - S @ first["weights"] - first["bias"]
    Zc = Z[rest] - Z[rest].mean(axis=0)
    coef = np.linalg.solve(Zc.T @ Zc + 100.0 * np.eye(Z.shape[1]), Zc.T @ (residual - residual.mean()))
    base = pair_stat_features(stats[u[held]], stats[i[held]], y[rest].mean()) @ first["weights"] + first["bias"]
    by_hand = base + residual.mean() + (Z[held] - Z[rest].mean(axis=0)) @ coef
    np.testing.assert_allclose(oof[held], by_hand, rtol=1e-8, atol=1e-10)


def test_retrieval_loss_by_hand():
    """Three pairs, four item columns. Pair 0: user A, item X (5 stars); pair 1: user A, item Y (5 stars);
    pair 2: user B, item Z (2 stars: no positive, but Z stays a negative for the others). Column 3 holds X
    again (another profile variant)."""
    import math

    import torch

    from models.lm.module import retrieval_loss

    scores = torch.tensor([[2.0, 1.0, 0.5, 2.0], [0.0, 1.5, 1.0, 0.0], [0.3, 0.2, 0.1, 0.3]])
    logq = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.5]))
    args = dict(
        item_index=torch.tensor([0, 1, 2]),
        ratings=torch.tensor([5.0, 5.0, 2.0]),
        user_entity=torch.tensor([0, 0, 1]),
        item_entity=torch.tensor([10, 11, 12]),
        column_entity=torch.tensor([10, 11, 12, 10]),
        column_logq=logq,
    )
    loss = retrieval_loss(scores, threshold=4.0, **args)
    # pair 0: Y (A's other positive) and X's other variant are masked: X against Z
    logits = [2.0 - math.log(0.5), 0.5 - math.log(0.125)]
    pair0 = -(logits[0] - math.log(sum(math.exp(x) for x in logits)))
    # pair 1: X and its variant (A's other positive) masked: Y against Z
    logits = [1.5 - math.log(0.25), 1.0 - math.log(0.125)]
    pair1 = -(logits[0] - math.log(sum(math.exp(x) for x in logits)))
    assert float(loss) == pytest.approx((pair0 + pair1) / 2, rel=1e-6)
    # logQ moves the loss: without it (equal expected counts) the figure differs
    flat = retrieval_loss(scores, threshold=4.0, **{**args, "column_logq": torch.zeros(4)})
    assert abs(float(flat) - float(loss)) > 0.1
    # a threshold nobody reaches: no positive rows, a zero that keeps the graph
    scores.requires_grad_(True)
    none = retrieval_loss(scores, threshold=6.0, **args)
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_batches_carry_entities_and_expected_counts(tokenizer):
    data = lm_reviews()
    module = tiny_module(
        tokenizer,
        data,
        pairs_per_user=4,
        extra_keys=[("item", i, FULL) for i in sorted(data["item_id"].unique())],
        mixed_negatives=5,
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    n_pairs, n_columns = len(batch["rating"]), len(batch["item_rows"])
    assert (
        len(batch["column_entity"]) == len(batch["column_logq"]) == n_columns > len(set(batch["item_index"].tolist()))
    )
    # a pair's item column holds its item entity; fold variants of one user share the user entity
    assert (batch["column_entity"][batch["item_index"]] == batch["item_entity"]).all()
    counts = data["item_id"].value_counts()
    keys = {row: key for key, row in module.tokens.keys.items()}
    catalogue = data["item_id"].nunique()
    for column, row in enumerate(batch["item_rows"].tolist()):
        share = (counts[keys[row][1]] + 1) / (len(data) + catalogue)
        expected = n_pairs * share + 5 / catalogue
        assert float(batch["column_logq"][column]) == pytest.approx(np.log(expected), rel=1e-5)


def test_item_profiles_start_with_metadata():
    items = pd.DataFrame(
        {"item_id": ["i1", "cold"], "title": ["Blue Guitar", "Red Drum"], "genres": ["rock|pop", None]}
    )
    profiles = build_profiles(lm_reviews(), items)
    assert profiles.item("i1").startswith("title: Blue Guitar. genres: rock, pop | ")
    # a cold item holds only what is known before anyone rates it: its metadata, with no rating statistics
    assert profiles.item("cold") == "title: Red Drum" and profiles.rating_stats(("item", "cold", FULL)) == (0.0, 0)
    assert profiles.pieces_of(("item", "i1", METADATA_ONLY)) == ("title: Blue Guitar. genres: rock, pop",)
    assert profiles.rating_stats(("item", "i1", METADATA_ONLY)) == (0.0, 0)
    assert ("item", "i2", METADATA_ONLY) not in profiles.pieces  # no metadata: no metadata-only variant


def test_item_dropout_shows_a_seeded_share_of_training_pairs_their_item_as_cold():
    from models.lm.data import pair_keys

    data = lm_reviews()
    items = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["Blue Guitar", "Red Drum"]})
    profiles = build_profiles(data, items)
    pairs = data[["user_id", "item_id"]].astype(str)
    plain = pair_keys(pairs, profiles.pair_fold)[1]
    _, dropped = pair_keys(pairs, profiles.pair_fold, {"i1", "i2"}, 0.5, seed=3)
    assert dropped == pair_keys(pairs, profiles.pair_fold, {"i1", "i2"}, 0.5, seed=3)[1]  # seeded
    changed = [(a, b) for a, b in zip(plain, dropped, strict=True) if a != b]
    assert all(b == ("item", a[1], METADATA_ONLY) and a[1] in {"i1", "i2"} for a, b in changed)
    eligible = int(pairs["item_id"].isin(["i1", "i2"]).sum())
    assert 0.25 * eligible < len(changed) < 0.75 * eligible
    assert pair_keys(pairs, None, {"i1"}, 0.9)[1] == [("item", i, FULL) for i in pairs["item_id"]]  # held-out pairs


def test_canary_in_held_out_reviews_reaches_no_profile_and_no_token(tokenizer, tmp_path):
    data = lm_reviews()
    held_out = data.sample(frac=0.3, random_state=0)
    held_out = held_out.assign(review_text=held_out["review_text"] + f" {CANARY}")
    train = data.drop(held_out.index)
    profiles = build_profiles(train, max_reviews=50)
    assert not any(CANARY in text for text in profiles.texts.values())
    frames = {"train": train, "validation": held_out, "test": held_out}
    module = PairDataModule(
        {k: v[["user_id", "item_id", "rating"]] for k, v in frames.items()}, profiles, tokenizer, max_length=64
    )
    module.setup()
    decoded = tokenizer.batch_decode(module.tokens.ids)
    assert decoded and not any(CANARY in text for text in decoded)
    batch = next(iter(module.val_dataloader()))
    assert CANARY not in " ".join(tokenizer.batch_decode(batch["user_ids"]) + tokenizer.batch_decode(batch["item_ids"]))


def test_each_distinct_profile_is_encoded_once_per_batch(tokenizer):
    profiles = build_profiles(lm_reviews())
    tokens = ProfileTokens.build(profiles, [("user", "u0", -1), ("item", "i1", -1), ("item", "i2", -1)], tokenizer, 32)
    batch = Collate(tokens)([[(0, 1, 4.0), (0, 2, 3.0)], [(0, 1, 5.0)]])  # two groups of one user profile
    assert batch["user_ids"].shape[0] == 1 and batch["item_ids"].shape[0] == 2
    assert batch["item_index"].tolist() == [0, 1, 0] and batch["user_index"].tolist() == [0, 0, 0]
    assert batch["item_mask"].sum(1).tolist() == [len(tokens.ids[1]), len(tokens.ids[2])]  # dynamic padding


def test_fast_dev_run(tokenizer):
    import lightning as L

    from models.lm.module import TwoTowerModule

    data = lm_reviews()
    profiles = build_profiles(data)
    module = tiny_module(tokenizer, data, test=10, profiles=profiles)
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0)
    before = [p.detach().clone() for p in model.parameters()]
    L.Trainer(fast_dev_run=2, accelerator="cpu", enable_progress_bar=False, logger=False).fit(model, module)
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.parameters(), strict=True))
    assert not any("pooler" in name for name, _ in model.named_parameters())


def test_kept_piece_states_give_the_vectors_of_states_computed_afresh(tokenizer):
    """Frozen layers read each piece alone: kept (float16) states and states computed at every step give the
    same vectors and predictions; a one-piece profile is encoded as the whole encoder encodes it."""
    from models.lm.module import TwoTowerModule

    profiles = build_profiles(lm_reviews(), rating_history=3)
    keys = [("user", f"u{u}", FULL) for u in range(4)] + [("item", f"i{i}", FULL) for i in range(5)]
    tokens = ProfileTokens.build(profiles, keys, tokenizer, 32)
    assert all(len(layout) > 1 for layout in tokens.layout)  # several pieces each
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1).eval()
    whole = model.encode_tokens(tokens)  # nothing attached: every layer reads the whole profile
    assert model.attach_tokens(tokens, keep=False) is not None
    afresh = model.encode_tokens(tokens)
    assert not np.allclose(afresh, whole, atol=1e-3)  # the frozen layers no longer see across pieces
    assert model.cache_frozen_states(tokens)
    np.testing.assert_allclose(model.encode_tokens(tokens), afresh, atol=2e-3)  # float16 storage of the states
    batch = Collate(tokens)([[(0, 5, 4.0), (1, 6, 3.0)]])  # a training batch finds its profiles by row
    pred, _, _ = model(batch)
    model._pieces = None  # the same batch with states computed afresh
    np.testing.assert_allclose(pred.detach().numpy(), model(batch)[0].detach().numpy(), atol=2e-3)
    single = ProfileTokens.build(build_profiles(lm_reviews()), [("item", "nobody", FULL)], tokenizer, 32)
    alone = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1).eval()
    alone.load_state_dict(model.state_dict())
    whole_single = alone.encode_tokens(single)
    assert alone.cache_frozen_states(single)
    np.testing.assert_allclose(alone.encode_tokens(single), whole_single, atol=2e-3)
    assert not TwoTowerModule(encoder_config=TINY_BERT, freeze_layers=0).cache_frozen_states(tokens)


def test_training_on_cached_frozen_states_moves_only_the_upper_layers(tokenizer):
    import lightning as L

    from models.lm.module import TwoTowerModule

    data = lm_reviews()
    module = tiny_module(tokenizer, data)
    module.setup("fit")
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, freeze_layers=1)
    assert model.cache_frozen_states(module.tokens)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    L.Trainer(fast_dev_run=2, accelerator="cpu", enable_progress_bar=False, logger=False).fit(model, module)
    moved = {n for n, p in model.named_parameters() if not torch_equal(before[n], p)}
    assert any(".layer.1." in n for n in moved) and not any(".layer.0." in n or "embeddings" in n for n in moved)


def torch_equal(a, b) -> bool:
    return bool((a == b.detach()).all())


def _write_run(tmp_path, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = lm_reviews(n_users=16, per_user=8)
    rng = np.random.default_rng(1)
    fold = rng.choice(["train", "validation", "test"], len(data), p=[0.7, 0.15, 0.15])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data[fold == "train"].to_parquet(data_dir / "train.parquet")
    for name in ("validation", "test"):
        data.loc[fold == name, ["user_id", "item_id", "rating"]].to_parquet(data_dir / f"{name}.parquet")
    config = {
        "data_dir": str(data_dir),
        "output_dir": str(tmp_path / "out"),
        "encoder_config": TINY_BERT,
        "max_length": 32,
        "batch_size": 8,
        "max_epochs": 2,
        "progress_bar": False,
        "num_threads": 1,
        "checkpoint_every_n_steps": 2,
        **overrides,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path, tmp_path / "out"


def _launch(config, env=None):
    return subprocess.run(
        [sys.executable, "-m", "models.lm.train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


@pytest.mark.slow
def test_trainer_process_writes_checkpoints_embeddings_predictions(tmp_path):
    config, out = _write_run(tmp_path, freeze_layers=1)  # training and export on cached frozen states
    run = _launch(config)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 1 and metrics["best_val_rmse"] > 0 and not metrics["resumed"]
    assert (out / "checkpoints" / "best.ckpt").exists() and (out / "checkpoints" / "last.ckpt").exists()
    emb = np.load(out / "embeddings.npz")
    # [retrieval half (unit norm) | attention-pooled half], hidden size 32
    assert emb["user_vectors"].shape == (16, 64) and np.allclose(
        np.linalg.norm(emb["item_vectors"][:, :32], axis=1), 1, atol=1e-5
    )
    pred = pd.read_parquet(out / "predictions_test.parquet")
    test = pd.read_parquet(tmp_path / "data" / "test.parquet")
    assert len(pred) == len(test) and np.isfinite(pred["prediction"]).all()
    # the contract wrapper predicts what the trainer exported
    from models.lm.recommender import LMTwoTower

    model = LMTwoTower(tmp_path, profile=None)
    model._index(pd.read_parquet(tmp_path / "data" / "train.parquet"), None)
    model._load(out)
    np.testing.assert_allclose(
        model.predict(pred["user_id"], pred["item_id"]), pred["prediction"], rtol=1e-4, atol=1e-4
    )
    assert (out / "logs" / "version_0" / "metrics.csv").exists()
    # the readout's out-of-fold predictions of every training pair, for the fusion's stacked blender
    train = pd.read_parquet(tmp_path / "data" / "train.parquet")
    oof = model.oof_predictions(train, None)
    assert oof.shape == (len(train),) and np.isfinite(oof).all()


@pytest.mark.slow
def test_max_steps_shorter_than_an_epoch_validates_and_logs_progress(tmp_path):
    config, out = _write_run(tmp_path, max_steps=3, log_every_n_steps=1)
    run = _launch(config)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["best_val_rmse"] > 0  # validated where it stopped
    lines = [line for line in run.stderr.splitlines() if line.startswith("[lm] ")]
    assert "[lm] training: 3 steps of 8 pairs (1 process(es) on cpu)" in lines
    quiet = ("GPU available", "TPU available", "Seed set", "Total params", "┃ Name")  # Lightning's info lines
    assert not any(mark in line for line in run.stderr.splitlines() + run.stdout.splitlines() for mark in quiet)
    steps = [line for line in lines if " step " in line and "samples/s" in line and "ETA" in line]
    assert [line.split(" step ")[1].split()[0] for line in steps] == ["1/3", "2/3", "3/3"]
    assert any(line.startswith("[lm] validation at step 3: RMSE") for line in lines)
    assert lines[-1].startswith("[lm] done: validation MSE of the readout ") and "metrics.json" in lines[-1]
    assert "{" not in run.stdout  # the metrics are in metrics.json, not printed


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    config, out = _write_run(tmp_path, accelerator="cpu", devices=2, max_epochs=1)
    run = _launch(config)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["best_val_rmse"] > 0


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    config, out = _write_run(tmp_path, max_epochs=3)
    killed = _launch(config, {"RECLAB_LM_FAIL_AFTER_STEPS": "5"})
    assert killed.returncode == 3 and (out / "checkpoints" / "last.ckpt").exists()
    assert not (out / "metrics.json").exists()
    resumed = _launch(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["global_step"] > 5
    reference, ref_out = _write_run(tmp_path / "uninterrupted", max_epochs=3)
    assert _launch(reference).returncode == 0
    assert metrics["global_step"] == json.loads((ref_out / "metrics.json").read_text())["global_step"]


@pytest.mark.slow
def test_real_minilm_loads_offline_and_takes_a_step(tokenizer, monkeypatch):
    import torch

    from models.lm.module import TwoTowerModule

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = TwoTowerModule(encoder="minilm", rating_mean=3.0)
    assert model.net.encoder.config.hidden_size == 384 and getattr(model.net.encoder, "pooler", None) is None
    data = lm_reviews()
    profiles = build_profiles(data)
    module = PairDataModule(
        {"train": data[["user_id", "item_id", "rating"]]}, profiles, tokenizer, max_length=32, batch_size=4
    )
    module.setup()
    batch = next(iter(module.train_dataloader()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pred, u, items = model(batch)
    loss = torch.nn.functional.mse_loss(pred, batch["rating"])
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and u.shape[1] == 2 * 384  # [retrieval half | attention-pooled half]


def test_user_groups_cover_every_pair_once():
    from models.lm.data import PairDataset

    users = np.array([0, 1, 0, 0, 2, 0, 1])
    dataset = PairDataset(users, np.arange(7), np.ones(7), group=2)
    rows = np.concatenate(dataset.groups)
    assert sorted(rows.tolist()) == list(range(7))
    assert all(len(set(users[g])) == 1 and len(g) <= 2 for g in dataset.groups)


def test_a_pair_budget_keeps_one_pair_per_user_then_a_share_of_each_users_pairs():
    from models.lm.data import budget_rows

    users = np.repeat([0, 1, 2, 3], [1, 3, 6, 10])  # 20 pairs, four users
    assert budget_rows(users, None) is None and budget_rows(users, 20) is None  # no budget, or one that fits
    kept = budget_rows(users, 10, seed=0)
    assert len(kept) == 10 and len(set(kept)) == 10
    per_user = np.bincount(users[kept], minlength=4)
    # one pair each, then 6 more spread over the other 16 pairs (0, 2, 5, 9 of them) in proportion: 0, 0.75,
    # 1.9, 3.4 -> every user within one of its share
    assert per_user[0] == 1 and per_user.sum() == 10
    assert all(abs(per_user[u] - 1 - share) < 1 for u, share in zip((1, 2, 3), (0.75, 1.875, 3.375), strict=True))
    np.testing.assert_array_equal(kept, budget_rows(users, 10, seed=0))  # seeded
    assert not np.array_equal(kept, budget_rows(users, 10, seed=1))
    few = budget_rows(users, 3, seed=0)  # fewer pairs than users: three users, one pair each
    assert len(few) == 3 and len(set(users[few])) == 3


def test_a_budgeted_dataset_trains_on_the_kept_pairs_and_keeps_every_pair_for_the_readout():
    from models.lm.data import PairDataset

    users = np.repeat([0, 1, 2], [2, 3, 5])
    keep = np.array([0, 2, 3, 5, 9])
    dataset = PairDataset(users, np.arange(10), np.ones(10), group=2, keep=keep)
    assert sorted(np.concatenate(dataset.groups).tolist()) == keep.tolist() and dataset.pairs == 5
    assert len(dataset.users) == 10  # what the readout reads: every pair
    assert all(len(set(users[g])) == 1 for g in dataset.groups)
    whole = PairDataset(users, np.arange(10), np.ones(10), group=2)
    assert whole.pairs == 10 and [g.tolist() for g in whole.groups] == [
        g.tolist() for g in PairDataset(users, np.arange(10), np.ones(10), group=2, keep=np.arange(10)).groups
    ]  # no budget: the groups of before, draw for draw


@pytest.mark.slow
def test_the_trainer_under_a_pair_budget_says_how_many_pairs_it_trained_on(tmp_path):
    config, out = _write_run(tmp_path, max_train_pairs=20, max_epochs=1)
    run = _launch(config)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    train = pd.read_parquet(tmp_path / "data" / "train.parquet")
    assert metrics["train_pairs"] == len(train) > 20 and metrics["train_pairs_trained"] == 20
    assert metrics["budget"] == {
        "trained": 20,
        "of": len(train),
        "unit": "training pairs per epoch",
        "setting": "max_train_pairs",
    }
    assert metrics["global_step"] == 3  # 20 pairs in batches of 8
    assert f"training on 20 of {len(train)} training pairs per epoch" in run.stderr
    oof = pd.read_parquet(out / "predictions_train_oof.parquet")
    assert len(oof) == len(train)  # the readout still reads every training pair


def test_the_lm_mixes_popularity_into_its_ranking_only_where_validation_prefers_it(tmp_path):
    from builders import fake_lm, ratings

    train = ratings(n_users=30, n_items=40, per_user=8)
    items = pd.DataFrame({"item_id": sorted(train["item_id"].unique())})
    model = fake_lm(tmp_path, train, items)
    by_popularity = train["item_id"].value_counts().index  # most popular first
    seen = train.groupby("user_id")["item_id"].agg(set)

    def held_out(order):  # each user's first unrated item in ``order``
        return pd.DataFrame(
            [{"user_id": u, "item_id": next(i for i in order if i not in s), "rating": 5.0} for u, s in seen.items()]
        )

    from models.tuning import SearchSpace, tune

    space = SearchSpace(after_fit={"popularity_weight_": (10.0, 0.0, 0.1)}, judge="ndcg")  # tried smallest first
    assert model.search_space().after_fit["popularity_weight_"] == model.config().popularity_weights
    tuned = tune(model, train, held_out(by_popularity), items=items, space=space, fitted=model)
    assert tuned.model is model and model.popularity_weight_ == 10.0 and tuned.config == {"popularity_weight_": 10.0}
    scores = {config["popularity_weight_"]: value for config, value in tuned.tried if config}
    assert scores[10.0] > scores[0.0] and tuned.score == scores[10.0] and tuned.judge == "ndcg"
    users = list(seen.index[:3])
    cosine = model._user_vectors_for(users)[:, : model._dim] @ model._item_vectors[:, : model._dim].T
    np.testing.assert_allclose(model.score(users), cosine + 10.0 * np.log1p(model.item_counts))
    tune(model, train, held_out(by_popularity[::-1]), items=items, space=space, fitted=model)  # never mixed in
    assert model.popularity_weight_ == 0.0
    np.testing.assert_allclose(model.score(users), cosine)
    fresh = fake_lm(tmp_path / "fresh", train, items)
    tune(fresh, train, None, items=items, space=space, fitted=fresh)  # nothing to judge by: the cosine alone
    assert fresh.popularity_weight_ == 0.0


def test_trainer_output_is_streamed_to_the_log_without_noise(caplog):
    import logging
    import threading

    from models.lm.recommender import _Stream

    script = "import sys; print('[lm] step 1/2'); print('pooler.dense.bias | UNEXPECTED'); print('[lm] done', file=sys.stderr); sys.exit(3)"
    with caplog.at_level(logging.INFO, logger="reclab.lm"):
        stream = _Stream([sys.executable, "-c", script])
        code, tail = stream.wait(), stream.tail
    assert code == 3 and list(tail) == ["[lm] step 1/2", "[lm] done"]
    records = [r for r in caplog.records if r.name == "reclab.lm"]
    assert [r.getMessage() for r in records] == ["[lm] step 1/2", "[lm] done"]
    # read on another thread, logged as the starting thread's: a task run forwarding its thread gets them
    assert {r.thread for r in records} == {threading.get_ident()}


def test_trainer_output_goes_to_stderr_when_no_handler_would_show_it(capfd):
    import logging

    from models.lm.recommender import _Stream

    handler = logging.NullHandler()
    logging.getLogger().addHandler(handler)  # a handler exists, but the level (WARNING) drops INFO lines
    previous = logging.getLogger("reclab.lm").level
    logging.getLogger("reclab.lm").setLevel(logging.WARNING)
    try:
        code = _Stream([sys.executable, "-c", "print('[lm] step 1/2')"]).wait()
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("reclab.lm").setLevel(previous)
    assert code == 0 and "[lm] step 1/2" in capfd.readouterr().err


def test_lora_trains_the_adapters_pooling_and_head_only(tokenizer):
    import lightning as L

    from models.lm.module import TwoTowerModule

    data = lm_reviews()
    module = tiny_module(tokenizer, data)
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0, lora_rank=2)
    trainable, total = model.net.trainable_parameters()
    # adapters: rank 2 on query and value of 2 layers of hidden size 32: 2 layers x 2 x (32x2 + 2x32) = 512
    head = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and p.requires_grad)
    assert trainable - head == 512 and trainable < total / 2
    assert model.recipe().startswith("LoRA r=2 on query, value (")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    L.Trainer(fast_dev_run=2, accelerator="cpu", enable_progress_bar=False, logger=False).fit(model, module)
    moved = {n for n, p in model.named_parameters() if not torch_equal(before[n], p)}
    assert any("lora_B" in n for n in moved) and any(n.startswith("net.head") for n in moved)
    assert not any("lora_" not in n and n.startswith("net.encoder") for n in moved)  # pretrained weights stay
    with pytest.raises(ValueError, match="freeze_layers to 0"):
        TwoTowerModule(encoder_config=TINY_BERT, lora_rank=2, freeze_layers=1)


def test_length_buckets_keep_every_pair_once_and_pad_less(tokenizer):
    data = lm_reviews(n_users=30, per_user=6)

    def loader(buckets):
        module = tiny_module(tokenizer, data, validation=5, max_length=64, pairs_per_user=2, length_buckets=buckets)
        module.setup("fit")
        return module, list(module.train_dataloader())

    module, bucketed = loader(4)
    _, plain = loader(0)
    pairs = lambda batches: sorted(  # noqa: E731
        (u, i)
        for b in batches
        for u, i in zip(b["user_rows"][b["user_index"]].tolist(), b["item_rows"][b["item_index"]].tolist(), strict=True)
    )
    assert pairs(bucketed) == pairs(plain) and len(pairs(plain)) == len(data)  # every pair once per epoch
    padding = lambda batches: sum(int((b["user_mask"] == 0).sum() + (b["item_mask"] == 0).sum()) for b in batches)  # noqa: E731
    assert padding(bucketed) < 0.7 * padding(plain)
    assert abs(len(bucketed) - len(plain)) <= 1  # batches of the same number of pair groups


def test_identical_profiles_get_identical_vectors(tokenizer):
    """Items without reviews or metadata all read "no description": they must tie exactly (a cold-item ranking
    of numerical noise is no ranking), whatever the other profiles batched with them."""
    from models.lm.module import TwoTowerModule

    profiles = build_profiles(lm_reviews())
    keys = [("item", "nobody-1", FULL), ("user", "u0", FULL), ("item", "nobody-2", FULL)]
    keys += [("item", f"i{i}", FULL) for i in range(5)] + [("item", "nobody-3", FULL)]
    tokens = ProfileTokens.build(profiles, keys, tokenizer, 32)
    model = TwoTowerModule(encoder_config=TINY_BERT, rating_mean=3.0).eval()
    vectors = model.encode_tokens(tokens, batch=2)
    rows = [tokens.keys[k] for k in keys if k[1].startswith("nobody")]
    assert (vectors[rows] == vectors[rows[0]]).all()
    assert not np.allclose(vectors[tokens.keys[("item", "i0", FULL)]], vectors[rows[0]])


def test_lm_settings_are_checked_when_the_parameters_are():
    from pydantic import ValidationError

    from models.lm.config import PROFILES, profile_fields
    from models.registry import TrainConfig

    # the profile first, the overrides on top
    assert profile_fields("cpu", {"max_epochs": 3}) == {**PROFILES["cpu"], "max_epochs": 3}
    assert profile_fields(None, {}) == {}
    with pytest.raises(ValueError, match="unknown LM profile 'gpx'"):
        profile_fields("gpx", {})
    # every problem named at once, a misspelt key as what it is
    with pytest.raises(ValueError) as caught:
        profile_fields("cpu", {"max_epoch": 3, "batch_size": 1})
    message = str(caught.value)
    assert "max_epoch: not a setting of the LM" in message and "batch_size: Input should be greater" in message
    # ... when the training parameters are validated, before any model is built
    with pytest.raises(ValidationError, match="max_epoch: not a setting of the LM"):
        TrainConfig(lm_overrides={"max_epoch": 3})
    assert TrainConfig(lm_overrides={"max_epochs": 3}).lm_overrides == {"max_epochs": 3}
