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
SMALL = {"factors": 16, "blocks": 1, "max_len": 8, "epochs": 30, "batch_size": 32}


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


def test_registered_beside_its_twin_outside_the_defaults():
    """lm_sequential is a contender of the language family (the fusion may blend its ranking), its id-only twin
    its ablation (judged against it, a primary question); neither is trained unless named in --models."""
    from models.registry import ABLATIONS, DEFAULT_MODELS, LANGUAGE, REGISTRY, TrainConfig, fusion_candidates
    from tasks.evaluate import CONTENDERS

    assert ABLATIONS["lm_sequential_ids"] == "lm_sequential" and "lm_sequential" in LANGUAGE
    assert "lm_sequential" in CONTENDERS and "lm_sequential_ids" not in CONTENDERS
    assert "lm_sequential" in fusion_candidates("ranking") and "lm_sequential_ids" not in fusion_candidates("ranking")
    assert REGISTRY["lm_sequential"].reads_text and not REGISTRY["lm_sequential_ids"].reads_text
    assert TrainConfig().models == DEFAULT_MODELS and not {"lm_sequential", "lm_sequential_ids"} & set(DEFAULT_MODELS)


def test_a_run_with_the_sequential_lm_alone_writes_no_lm_vector_tables():
    """lm_embeddings / lm_predictions hold the two-tower LM's (or text_frozen's) vectors and ratings; a split
    whose only language model is the sequential LM (ranking only) has none to write, and says so by None."""
    from models.lm.frozen import TextFrozen
    from tasks.train import exporting_lm

    sequential = LMSequential(None, OVERRIDES)
    frozen = TextFrozen(None, OVERRIDES)
    assert exporting_lm({"lm_sequential": sequential, "popularity": object()}) is None
    assert exporting_lm({"lm_sequential": sequential, "text_frozen": frozen}) is frozen
