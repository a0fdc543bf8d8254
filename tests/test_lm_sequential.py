"""The sequential LM (models/lm/sequential.py): a planted order (A then B) ranked above popularity, a cold item
ranked from its text alone, nothing held out in a sequence or a profile (canaries), the history up to the test
at scoring time, the id-only twin as the same network with its text zeroed, no timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import TINY_BERT
from test_sequential import toy_log

from models.lm.sequential import LMSequential, LMSequentialIds

OVERRIDES = {"encoder_config": TINY_BERT, "max_length": 32, "folds": 2}
# a fast learner for tiny logs
SMALL = {"factors": 16, "blocks": 1, "max_len": 8, "epochs": 30, "batch_size": 32, "learning_rate": 3e-3}
SMALL |= {"heads": 2, "dropout": 0.2}


def with_text(log: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The toy log with a review per interaction, and an items table titling each item by its own word."""
    log = log.assign(summary="", review_text="fine " + log["item_id"])
    items = pd.DataFrame({"item_id": sorted(log["item_id"].unique())})
    items["title"] = "thing " + items["item_id"]
    return log, items


def probe(log: pd.DataFrame, user: str, last: str) -> pd.DataFrame:
    """A new user "probe" whose sequence is ``user``'s up to and including ``last``, one second apart."""
    rows = log[log["user_id"] == user].sort_values("timestamp")
    rows = rows.iloc[: list(rows["item_id"]).index(last) + 1]
    return rows.assign(user_id="probe", summary="", review_text="")


def top(model, user: str, n: int = 3) -> list[str]:
    scores = model.score([user])[0]
    return list(model.item_ids[np.argsort(-scores, kind="stable")[:n]])


def test_a_planted_order_is_ranked_above_popularity():
    """Half of the users have B right after A; P is the most popular item. A user whose last item is A gets B
    first, where popularity ranks P first."""
    log, items = with_text(toy_log(60))
    model = LMSequential(None, OVERRIDES, **SMALL).fit(log, items=items)
    history = pd.concat([log, probe(log, "u0", "A")], ignore_index=True)
    known = model.with_history(history)
    assert top(known, "probe", 1) == ["B"]
    assert model.item_ids[np.argmax(model.item_counts)] == "P"  # what popularity would put first
    assert model.metrics_["last_loss"] < model.metrics_["first_loss"]


def test_a_cold_item_is_ranked_from_its_text_alone():
    """C has no interaction and B's text; D has none and a text of its own. After A, C ranks above D for the
    sequential LM, while the id-only twin cannot tell them apart (no id, no text: the same vector)."""
    log, items = with_text(toy_log(60))
    log = log.assign(review_text="")  # B's profile is its metadata alone, as C's and D's
    items.loc[items["item_id"] == "B", "title"] = "bright blue bottle"
    cold = pd.DataFrame({"item_id": ["C", "D"], "title": ["bright blue bottle", "heavy iron anvil"]})
    items = pd.concat([items, cold], ignore_index=True)
    history = pd.concat([log, probe(log, "u0", "A")], ignore_index=True)
    text = LMSequential(None, OVERRIDES, **SMALL).fit(log, items=items).with_history(history)
    ids = LMSequentialIds(None, OVERRIDES, **SMALL).fit(log, items=items).with_history(history)
    c, d = (int(np.flatnonzero(text.item_ids == x)[0]) for x in ("C", "D"))
    scores = text.score(["probe"])[0]
    assert text.item_counts[c] == text.item_counts[d] == 0
    assert scores[c] > scores[d]
    twin = ids.score(["probe"])[0]
    assert twin[c] == twin[d]


def test_nothing_held_out_reaches_a_sequence_or_a_profile():
    """Validation (a canary item, a canary review) changes nothing in the fit: the sequences and the weights
    are those of training alone; at scoring time the validation interactions join the sequences, the test's
    never."""
    log, items = with_text(toy_log(30))
    validation = log.groupby("user_id").tail(1)
    train = log.drop(validation.index)
    canary = validation.assign(review_text="CANARY zebra xylophone")
    plain = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 3}).fit(train, validation, items=items)
    again = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 3}).fit(train, canary, items=items)
    for name, value in plain._weights.items():
        np.testing.assert_array_equal(again._weights[name], value)
    np.testing.assert_array_equal(again._sequence_items, plain._sequence_items)
    user = int(np.flatnonzero(plain.user_ids == "u0")[0])
    last = validation.loc[validation["user_id"] == "u0", "item_id"].iloc[0]
    assert len(plain.sequence(user)) == (train["user_id"] == "u0").sum()
    history = pd.concat([train, validation[["user_id", "item_id", "rating", "timestamp"]]], ignore_index=True)
    known = plain.with_history(history)
    assert known.item_ids[known.sequence(user)[-1]] == last  # the validation item, last of u0's history
    assert len(plain.sequence(user)) == (train["user_id"] == "u0").sum()  # the fitted model is left as it was


def test_the_id_only_twin_is_the_network_with_its_text_input_zeroed():
    """The twin equals the sequential LM built with its text input switched off (same shapes, seeds and
    training), and its scores do not move when the items' texts do."""
    log, items = with_text(toy_log(30))
    twin = LMSequentialIds(None, OVERRIDES, **{**SMALL, "epochs": 5}).fit(log, items=items)
    zeroed = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 5})
    zeroed.text_input = False
    zeroed.fit(log, items=items)
    np.testing.assert_array_equal(twin.score(twin.user_ids), zeroed.score(zeroed.user_ids))
    other = items.assign(title="a wholly different text " + items["item_id"])
    moved = LMSequentialIds(None, OVERRIDES, **{**SMALL, "epochs": 5}).fit(log.assign(review_text="x"), items=other)
    np.testing.assert_array_equal(moved.score(moved.user_ids), twin.score(twin.user_ids))
    with_text_on = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 5}).fit(log, items=items)
    assert not np.array_equal(with_text_on.score(with_text_on.user_ids), twin.score(twin.user_ids))


def test_without_timestamps_it_ranks_nothing(caplog):
    log, items = with_text(toy_log(20))
    model = LMSequential(None, OVERRIDES, **SMALL).fit(log.drop(columns="timestamp"), items=items)
    assert np.all(model.score(model.user_ids) == 0)
    assert "no timestamps" in caplog.text


@pytest.mark.parametrize("n_items", [None, 3])
def test_the_full_and_the_sampled_softmax_both_learn_the_order(n_items):
    """Above ``full_softmax_items`` the loss samples its negatives: the planted order is still learned."""
    log, items = with_text(toy_log(60))
    settings = {} if n_items is None else {"full_softmax_items": n_items, "negatives": 8}
    model = LMSequential(None, OVERRIDES, **SMALL, **settings).fit(log, items=items)
    known = model.with_history(pd.concat([log, probe(log, "u0", "A")], ignore_index=True))
    assert top(known, "probe", 1) == ["B"]


def test_no_item_profile_a_window_reads_holds_its_users_review():
    """With folds by user, every item's fold-f profile holds no review by a user of fold f: the profiles a
    user's training windows read (history, target, catalogue) never carry that user's own words."""
    from models.lm.profiles import build_profiles

    log, _ = with_text(toy_log(30))
    log = log.assign(review_text="by " + log["user_id"] + " of " + log["item_id"])
    profiles = build_profiles(log, None, folds=2, seed=0, folds_by_user=True)
    fold_of = profiles.pair_fold.groupby(level="user_id").agg(["min", "max"])
    assert (fold_of["min"] == fold_of["max"]).all()  # one fold per user
    assert fold_of["min"].nunique() == 2
    for user, fold in fold_of["min"].items():
        for item in log["item_id"].unique():
            pieces = profiles.pieces_of(("item", item, int(fold)))
            assert not any(p.startswith(f"by {user} of") for p in pieces)


def test_registered_beside_its_twin_among_the_defaults():
    """lm_sequential is a contender of the language family (the fusion may blend its ranking), its id-only twin
    its ablation (judged against it, a primary question: "what text adds to a sequence model"); both default."""
    from models.registry import (
        ABLATIONS,
        CONTENDERS,
        DEFAULT_MODELS,
        LANGUAGE,
        REGISTRY,
        TrainConfig,
        fusion_candidates,
    )

    assert ABLATIONS["lm_sequential_ids"] == "lm_sequential" and "lm_sequential" in LANGUAGE
    assert "lm_sequential" in CONTENDERS and "lm_sequential_ids" not in CONTENDERS
    assert "lm_sequential" in fusion_candidates("ranking") and "lm_sequential_ids" not in fusion_candidates("ranking")
    assert REGISTRY["lm_sequential"].reads_text and not REGISTRY["lm_sequential_ids"].reads_text
    from models.registry import ABLATED

    assert TrainConfig().models == DEFAULT_MODELS and {"lm_sequential", "lm_sequential_ids"} <= set(DEFAULT_MODELS)
    assert ABLATED == {"text_frozen": "fine-tuning", "lm_sequential_ids": "text to a sequence model"}
    assert TrainConfig().lm_sequential_trials == 0 and TrainConfig(lm_sequential_trials=2).lm_sequential_trials == 2


def test_a_run_with_the_sequential_lm_alone_writes_no_lm_vector_tables():
    """lm_embeddings / lm_predictions hold the two-tower LM's (or text_frozen's) vectors and ratings; a split
    whose only language model is the sequential LM (ranking only) has none to write, and says so by None."""
    from models.lm.frozen import TextFrozen
    from tasks.train import exporting_lm

    sequential = LMSequential(None, OVERRIDES)
    frozen = TextFrozen(None, OVERRIDES)
    assert exporting_lm({"lm_sequential": sequential, "popularity": object()}) is None
    assert exporting_lm({"lm_sequential": sequential, "text_frozen": frozen}) is frozen


def biased_log(n_users: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The toy log with ratings that are a user bias plus an item bias (users u0-u19 rate 2 lower; item P and
    the x items rate 1 higher than A and B), plus noise; a review per interaction."""
    log, items = with_text(toy_log(n_users))
    rng = np.random.default_rng(1)
    user_bias = np.where(log["user_id"].str[1:].astype(int) < n_users // 2, -1.0, 1.0)
    item_bias = np.where(log["item_id"].isin(["A", "B"]), -0.5, 0.5)
    return log.assign(rating=3.0 + user_bias + item_bias + rng.normal(0, 0.3, len(log))), items


def test_the_rating_head_learns_user_and_item_biases():
    """The readout (ridge on the user's and the item's rating statistics, then on the states and item vectors)
    predicts held-out ratings far closer than the training mean: 3 ± 1.5 by user and item, noise 0.3."""
    log, items = biased_log()
    x_items = log[log["item_id"].str.match(r"x\d$|x1\d$")]  # the random items, each rated by many users
    held = x_items.groupby("user_id").head(1)
    validation = x_items.drop(held.index).groupby("user_id").head(1)
    train = log.drop(held.index).drop(validation.index)
    model = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 5}).fit(train, validation, items=items)
    known = model.with_history(pd.concat([train, validation], ignore_index=True))
    predicted = known.predict(held["user_id"], held["item_id"])
    rmse = float(np.sqrt(np.mean((predicted - held["rating"]) ** 2)))
    baseline = float(np.sqrt(np.mean((model.global_mean - held["rating"]) ** 2)))
    assert "rating" in model.tasks and np.isfinite(predicted).all()
    assert rmse < 0.5 and rmse < baseline / 1.9, (rmse, baseline)  # 0.47 and 0.97 here (noise: 0.3)
    assert model._readout["stats_val_mse"] < baseline**2 / 1.5  # the statistics alone: 0.51 against 0.94


def test_a_training_pair_reads_only_the_ratings_before_it():
    """The readout's training pairs read the user's ratings before each pair (a prefix: never the pair's own
    rating) and the item's ratings by users of the other folds."""
    import models.lm.sequential as sequential

    log, items = biased_log(10)
    seen = {}
    real = sequential._readout

    def spy(pairs):
        seen.update(pairs)
        return real(pairs)

    sequential._readout = spy
    try:
        model = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 1}).fit(log, items=items)
    finally:
        sequential._readout = real
    states, vectors, user_stats, item_stats, ratings = seen["train"]
    u0 = log[log["user_id"] == "u0"].sort_values("timestamp")
    assert len(ratings) == len(log) - log["user_id"].nunique()  # every rating after a user's first
    # u0's pairs: the n-th holds the sum and count of u0's first n ratings, and rates the n-th item after them
    ordered = model._sequence_items[model._sequence_starts[0] : model._sequence_starts[1]]
    assert list(model.item_ids[ordered]) == list(u0["item_id"])
    mine = np.isin(np.round(user_stats[:, 0], 9), np.round(np.cumsum(u0["rating"].to_numpy())[:-1], 9))
    counts = sorted(user_stats[mine, 1].astype(int))
    assert counts == list(range(1, len(u0)))
    assert (
        item_stats[:, 1] < np.bincount(model.item_index(log["item_id"]))[model.item_index(log["item_id"])].max()
    ).all()
    assert len(states) == len(vectors) == len(ratings)


def test_without_ratings_it_predicts_the_training_mean():
    log, items = with_text(toy_log(20))
    model = LMSequential(None, OVERRIDES, **{**SMALL, "epochs": 1}).fit(log.drop(columns="rating"), items=items)
    assert model._readout == {}
    assert np.all(model.predict(["u0", "u1"], ["A", "B"]) == model.global_mean)


def test_without_reviews_item_text_is_the_metadata_alone():
    """reviews=False: the items' vectors read their metadata, and changing every review changes nothing; with
    reviews=True (the default) the same change moves the scores."""
    log, items = with_text(toy_log(30))
    settings = {**SMALL, "epochs": 3}
    for reviews, moves in ((False, False), (True, True)):
        settings["reviews"] = reviews
        one = LMSequential(None, OVERRIDES, **settings).fit(log, items=items)
        other = LMSequential(None, OVERRIDES, **settings).fit(log.assign(review_text="other words"), items=items)
        same = np.array_equal(one.score(one.user_ids), other.score(other.user_ids))
        assert same != moves
    assert LMSequential(None, OVERRIDES).reviews is True


def test_a_window_budget_trains_on_a_share_of_the_windows_and_says_so():
    """Under ``max_windows`` it trains on that many windows (one per user at least) and its metrics say so; a
    budget above the windows binds nothing: the same fit as without one."""
    log, items = with_text(toy_log(60))
    whole = LMSequential(None, OVERRIDES, **SMALL, max_windows=None).fit(log, items=items)
    windows = whole.metrics_["windows"]
    assert "budget" not in whole.metrics_
    cut = LMSequential(None, OVERRIDES, **SMALL, max_windows=windows // 2).fit(log, items=items)
    assert cut.metrics_["budget"] == {
        "trained": windows // 2,
        "of": windows,
        "unit": "windows per epoch",
        "setting": "max_windows",
    }
    loose = LMSequential(None, OVERRIDES, **SMALL, max_windows=windows + 1).fit(log, items=items)
    assert "budget" not in loose.metrics_
    np.testing.assert_array_equal(loose.score(["u0", "u1"]), whole.score(["u0", "u1"]))
