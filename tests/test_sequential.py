"""SASRec and BERT4Rec through Cornac: parity with the library's own scores, a planted sequential pattern, the
order of a user's history, no timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.recommenders.sequential import BERT4Rec, SASRec

SMALL = {"factors": 16, "blocks": 1, "max_len": 8, "epochs": 3, "batch_size": 32, "negatives": 16}


def toy_log(n_users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Each user: four random items and P (the most popular item: every user has it) in a random order; then
    half of the users A then B (B always follows A), the other half x99; at increasing times."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        seq = [f"x{i}" for i in rng.choice(12, 4, replace=False)]
        seq.insert(int(rng.integers(5)), "P")
        seq += ["A", "B"] if u % 2 == 0 else ["x99"]
        rows += [(f"u{u}", item, 5.0, 1_000 + 10 * t) for t, item in enumerate(seq)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_scores_equal_cornacs_own_for_the_same_sequences_and_seed(cls):
    """The wrapper's scores are the library's: the same sessions (each user's items in time order), the same
    seed and settings, fitted by Cornac directly, score every user's history identically."""
    import cornac
    from cornac.data import SequentialDataset

    log = toy_log()
    model = cls(**SMALL, seed=3).fit(log)
    ordered = log.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    # the wrapper names users and items by their positions; Cornac sees the same sessions under those names
    user = {u: str(n) for n, u in enumerate(model.user_ids)}
    item = {i: str(n) for n, i in enumerate(model.item_ids)}
    rows = [
        (user[u], user[u], item[i], n) for n, (u, i) in enumerate(zip(ordered.user_id, ordered.item_id, strict=True))
    ]
    raw = getattr(cornac.models, cls.network)(
        embedding_dim=16,
        num_blocks=1,
        num_heads=1,
        dropout=0.2,
        max_len=8,
        n_epochs=3,
        batch_size=32,
        learning_rate=1e-3,
        n_sample=16,
        sample_alpha=0.0,  # uniform negatives, reclab's default
        loss="ce",
        seed=3,
    ).fit(SequentialDataset.build(rows, fmt="USIT", seed=3))
    ours = model.score(model.user_ids)
    for n, u in enumerate(model.user_ids):
        history = [raw.iid_map[item[i]] for i in ordered[ordered.user_id == u].item_id]
        theirs = raw.score(raw.uid_map[user[u]], history)
        for catalogue_item, position in raw.iid_map.items():
            assert ours[n, int(catalogue_item)] == pytest.approx(float(theirs[position]), abs=1e-6)


def test_a_planted_pattern_a_then_b_is_ranked_above_popularity():
    """Every user who chose A chose B next: a new user whose last item is A gets B first from SASRec, where
    popularity says P (every user's item, twice B's count)."""
    from models.recommenders.baselines import Popularity

    log = toy_log(n_users=60)
    probe = pd.DataFrame(
        [("new", "x1", 5.0, 1), ("new", "x5", 5.0, 2), ("new", "A", 5.0, 3)],
        columns=["user_id", "item_id", "rating", "timestamp"],
    )
    known = pd.concat([log, probe], ignore_index=True)
    model = SASRec(factors=32, blocks=1, max_len=8, epochs=30, batch_size=32, negatives=16, seed=0).fit(known)
    assert model.recommend(["new"], k=1)[0][0, 0] == "B"
    assert Popularity().fit(known).recommend(["new"], k=1)[0][0, 0] == "P"


def test_the_history_is_read_in_time_order_not_row_order():
    log = toy_log()
    model = SASRec(**SMALL).fit(log.sample(frac=1.0, random_state=1))
    shuffled_rows = SASRec(**SMALL).fit(log)
    u = int(model.user_index(["u0"])[0])
    assert list(model.item_ids[model.sequence(u)]) == list(log[log.user_id == "u0"].sort_values("timestamp").item_id)
    np.testing.assert_array_equal(model.score(["u0", "u3"]), shuffled_rows.score(["u0", "u3"]))


def test_without_timestamps_it_ranks_nothing_and_says_so(caplog):
    log = toy_log().assign(timestamp=np.nan)
    model = SASRec(**SMALL).fit(log)
    scores = model.score(["u0", "u1", "nobody"])
    assert (scores == scores[0, 0]).all() and model.ordered_ is False
    assert "no timestamps" in caplog.text
