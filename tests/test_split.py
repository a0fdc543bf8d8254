"""Split protocols: hand-checkable folds, reproducibility byte for byte, seeds that differ."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from builders import review, write_lines

from models.evaluation.split import (
    SplitConfig,
    cold_item_split,
    kcore_filter,
    kfold_assignment,
    random_split,
    split,
    split_all,
    temporal_split,
)
from readers import resolve_dataset
from tasks.split import split_workspace


def frame(n_users=20, n_items=15, per_user=6, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            rows.append({"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1_400_000_000 + 100 * k})
    return pd.DataFrame(rows)


def test_temporal_leave_last_out_by_hand():
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "c"],
            "item_id": ["x", "y", "z", "w", "x", "y", "x"],
            "timestamp": [10, 40, 30, 20, 5, 6, 1],
        }
    )
    folds = temporal_split(df, seed=0)
    # a: x(10) w(20) z(30) y(40) -> y test, z validation; b and c have < 3 interactions: all train
    assert folds.tolist() == ["train", "test", "validation", "train", "train", "train", "train"]


def test_temporal_ties_broken_by_seed_only():
    df = pd.DataFrame({"user_id": ["a"] * 4, "item_id": list("pqrs"), "timestamp": [1, 1, 1, 1]})
    runs = {tuple(temporal_split(df, seed=s)) for s in range(8)}
    assert len(runs) > 1  # a tie is broken differently by different seeds
    assert all(sorted(r) == ["test", "train", "train", "validation"] for r in runs)
    assert temporal_split(df, seed=3).tolist() == temporal_split(df, seed=3).tolist()


def test_random_split_sizes_and_order_independence():
    df = frame()
    folds = random_split(df, seed=0)
    n = len(df)
    assert (folds == "train").sum() == int(n * 0.8) and (folds == "validation").sum() == int(n * 0.1)
    shuffled = df.sample(frac=1.0, random_state=1)
    assert random_split(shuffled, seed=0).reindex(df.index).tolist() == folds.tolist()
    assert random_split(df, seed=1).tolist() != folds.tolist()


def test_cold_items_have_no_training_interactions():
    df = frame()
    folds = cold_item_split(df, seed=0, fraction=0.2)
    held = df.loc[folds != "train", "item_id"]
    assert not set(held) & set(df.loc[folds == "train", "item_id"])
    assert df.groupby("item_id")["item_id"].size().index.size * 0.2 == pytest.approx(held.nunique(), abs=1)
    per_item = pd.DataFrame({"item": df["item_id"], "fold": folds}).groupby("item")["fold"].nunique()
    assert (per_item == 1).all()  # every item's interactions all land in one fold


def test_kcore_by_hand():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "y", "z"]})
    assert kcore_filter(df, 2).tolist() == [True, True, True, True, False]
    folds = split(df.assign(timestamp=range(5)), "random", SplitConfig(kcore=2))
    assert folds.isna().tolist() == [False, False, False, False, True]


def test_config_checks_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(fractions=(0.8, 0.1, 0.2))


def _export(con, split_id) -> bytes:
    df = con.execute("SELECT * FROM split_assignments WHERE split_id = ? ORDER BY user_id, item_id", [split_id]).df()
    return df.to_csv(index=False).encode()


def test_same_seed_same_split_byte_for_byte(tmp_path, ingest):
    records = [review(f"u{i % 11}", f"i{i % 13}", 1 + i % 5, ts=1_400_000_000 + i * 37) for i in range(120)]
    spec = resolve_dataset(write_lines(tmp_path / "r.json", records))
    con_a, _ = ingest(spec, db=tmp_path / "a.duckdb")
    con_b, _ = ingest(spec, db=tmp_path / "b.duckdb")
    every = ("random", "temporal", "cold_items", "kfold")
    for con in (con_a, con_b):
        split_workspace(con, SplitConfig(seed=7, protocols=every))
        split_workspace(con, SplitConfig(seed=8, protocols=every))
    for pattern in ("random_s{}", "temporal_s{}", "cold_items_s{}", "kfold_s{}_f1", "kfold_s{}_f5"):
        a, b = _export(con_a, pattern.format(7)), _export(con_b, pattern.format(7))
        assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
        assert _export(con_a, pattern.format(8)) != a
    params = con_a.execute(
        "SELECT split_id, seed, n_train + n_validation + n_test FROM splits ORDER BY split_id"
    ).fetchall()
    assert ("random_s7", 7, len({(f"u{i % 11}", f"i{i % 13}") for i in range(120)})) in params


def test_kfold_tests_every_rating_exactly_once_with_disjoint_folds():
    df = frame(n_users=30, n_items=40, per_user=7)
    folds = split_all(df, "kfold", SplitConfig(protocols=("kfold",), folds=5))
    assert list(folds) == [f"kfold_s0_f{f}" for f in range(1, 6)]
    tested = pd.concat([(labels == "test").astype(int) for labels in folds.values()], axis=1)
    assert (tested.sum(axis=1) == 1).all()  # each rating in exactly one test fold: folds disjoint, all covered
    for split_id, labels in folds.items():
        test = df[labels == "test"]
        train = df[labels == "train"]
        # no user's test rating is in its own fold's training (the same pair never sits in two folds)
        assert not set(zip(test["user_id"], test["item_id"], strict=True)) & set(
            zip(train["user_id"], train["item_id"], strict=True)
        )
        # every user with at least K = 5 ratings is in every test fold (user-stratified)
        assert set(test["user_id"]) == set(df["user_id"]), split_id
        rest = (labels != "test").sum()
        assert (labels == "validation").sum() == int(rest * 0.125)  # carved from the fold's training part


def test_kfold_deals_each_users_ratings_over_the_folds_evenly():
    df = frame(n_users=12, n_items=30, per_user=7)
    fold = pd.Series(kfold_assignment(df, seed=0, folds=5), index=df.index)
    per_user = df.assign(fold=fold).groupby("user_id")["fold"].value_counts().unstack(fill_value=0)
    assert per_user.shape[1] == 5 and per_user.min().min() >= 1 and per_user.max().max() <= 2  # 7 over 5: 1 or 2
    few = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"]})
    assert sorted(kfold_assignment(few, seed=0, folds=5)) in ([0, 1], [1, 2], [2, 3], [3, 4], [0, 4])


def test_kfold_is_seeded_and_independent_of_input_order():
    df = frame(n_users=15, n_items=30, per_user=6)
    config = SplitConfig(protocols=("kfold",), folds=3)
    a = split_all(df, "kfold", config)
    shuffled = split_all(df.sample(frac=1.0, random_state=4), "kfold", config)
    assert all(shuffled[k].reindex(df.index).tolist() == a[k].tolist() for k in a)
    other = split_all(df, "kfold", config.model_copy(update={"seed": 1}))
    assert other["kfold_s1_f1"].tolist() != a["kfold_s0_f1"].tolist()
    with pytest.raises(ValueError, match="split_all"):
        split(df, "kfold", config)


def test_kfold_splits_are_stored_one_per_fold(tmp_path, ingest):
    records = [review(f"u{i % 11}", f"i{i % 13}", 1 + i % 5, ts=1_400_000_000 + i * 37) for i in range(120)]
    con, _ = ingest(resolve_dataset(write_lines(tmp_path / "r.json", records)), db=tmp_path / "k.duckdb")
    sizes = split_workspace(con, SplitConfig(protocols=("kfold",), folds=4, seed=2))
    assert list(sizes) == ["kfold_s2_f1", "kfold_s2_f2", "kfold_s2_f3", "kfold_s2_f4"]
    n = len({(f"u{i % 11}", f"i{i % 13}") for i in range(120)})
    assert sum(s["test"] for s in sizes.values()) == n
    rows = con.execute("SELECT DISTINCT protocol, seed FROM splits").fetchall()
    assert rows == [("kfold", 2)]
    split_workspace(con, SplitConfig(protocols=("kfold", "random"), folds=3, seed=5))
    con.close()
    from tasks.split import planned_folds

    assert planned_folds(tmp_path / "k.duckdb") == {"kfold_s2": 4, "kfold_s5": 3}  # K of each k-fold unit


def test_train_fractions_nest_keep_every_user_and_leave_validation_and_test_untouched():
    import math

    from models.evaluation import full_data_unit, judged_unit, train_fraction

    data = frame(n_users=30, n_items=40, per_user=12)
    config = SplitConfig(protocols=("kfold", "random"), train_fractions=(0.1, 0.25, 1.0), folds=3)
    made = split_all(data, "random", config)
    assert list(made) == ["random_s0", "random_s0_t25", "random_s0_t10"]
    full, quarter, tenth = (made[s] for s in made)
    for reduced, fraction in ((quarter, 0.25), (tenth, 0.1)):
        held = full.isin(["validation", "test"])
        pd.testing.assert_series_equal(reduced[held], full[held])  # the same validation and test rows
        assert reduced[~held].isna().sum() == (full == "train").sum() - (reduced == "train").sum()
        kept = data[reduced == "train"].groupby("user_id").size()
        whole = data[full == "train"].groupby("user_id").size()
        # every user keeps ceil(fraction x n) of their n training ratings, at least one
        assert kept.reindex(whole.index).tolist() == [max(1, math.ceil(fraction * n)) for n in whole]
    assert set(data.index[tenth == "train"]) <= set(data.index[quarter == "train"])  # nested
    again = split_all(data.sample(frac=1.0, random_state=4), "random", config)["random_s0_t10"]
    pd.testing.assert_series_equal(again.reindex(data.index), tenth)  # seeded, independent of row order
    other = split_all(data, "random", config.model_copy(update={"seed": 1}))["random_s1_t10"]
    assert not other.equals(tenth)

    folds = split_all(data, "kfold", config)
    assert list(folds)[3:] == ["kfold_s0_t25_f1", "kfold_s0_t25_f2", "kfold_s0_t25_f3", *list(folds)[6:]]
    assert judged_unit("kfold_s0_t25_f2") == "kfold_s0_t25" and full_data_unit("kfold_s0_t25") == "kfold_s0"
    assert train_fraction("kfold_s0_t25_f2") == 0.25 and train_fraction("random_s0_t10") == 0.1
    assert train_fraction("kfold_s0_f2") == 1.0 and train_fraction("temporal_s0") == 1.0
    with pytest.raises(ValueError, match="whole percentage"):
        SplitConfig(train_fractions=(0.125,))
