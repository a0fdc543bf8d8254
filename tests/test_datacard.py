"""The data card: hand-checkable descriptions, planted variant duplicates and text twins flagged, degenerate
folds flagged, and the text-duplicate policy's collapse keeping the accounting identity."""

from __future__ import annotations

import pandas as pd
import pytest
from builders import review, write_lines

from data_checks import DataCardConfig
from data_checks.card import data_card, describe, normalise_text, split_checks, threats, unit_sizes, verdict_gates
from readers import InputError, resolve_dataset
from tasks import tables

CONFIG = DataCardConfig(min_fold_ratings=2, min_fold_users=1)
SAME = "This strap fits every guitar I own, great!"  # 43 characters


def frame(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "review_text"])


# u0 wrote one text on three colour variants (one near-identical); u1 wrote "Great!" twice (too short to count)
INTERACTIONS = frame(
    [
        ("u0", "red", 5, SAME),
        ("u0", "blue", 5, SAME),
        ("u0", "green", 5, "this strap fits every guitar i own... GREAT"),
        ("u1", "red", 4, "Great!"),
        ("u1", "blue", 4, "Great!"),
        ("u2", "red", 2, "Too short for my bass, and the leather smells."),
        ("u3", "green", 3, "It is fine for the price but nothing special."),
        ("u3", "blue", 1, "Broke on the first day, returned it at once."),
    ]
)


def test_normalisation_equates_near_identical_text_and_ignores_short_text():
    norm = normalise_text(INTERACTIONS["review_text"], 20)
    assert norm[0] == norm[1] == norm[2] == "this strap fits every guitar i own great"
    assert norm[3:5].isna().all()


def test_description_by_hand():
    card = describe(INTERACTIONS, {"red", "blue"}, CONFIG)
    assert (card["interactions"], card["users"], card["items"]) == (8, 4, 3)
    assert card["density"] == pytest.approx(8 / 12)
    assert card["ratings"] == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 3}
    assert card["top_rating_share"] == pytest.approx(3 / 8)
    assert card["per_user"]["median"] == 2 and card["per_item"]["max"] == 3
    assert card["variant_duplicates"] == {"interactions": 3, "share": pytest.approx(3 / 8), "groups": 1}
    coverage = card["metadata_coverage"]  # red (3 ratings) and blue (3) have metadata, green (2) not
    assert coverage == {"items": pytest.approx(2 / 3), "interactions": pytest.approx(6 / 8), "items_without": 1}


def test_held_out_twins_fold_sizes_and_candidates_by_hand():
    assignments = pd.DataFrame(
        [
            ("random_s0", "u0", "red", "train"),
            ("random_s0", "u0", "blue", "test"),  # same user, same text in training
            ("random_s0", "u0", "green", "validation"),  # near-identical: a twin too
            ("random_s0", "u1", "red", "train"),
            ("random_s0", "u1", "blue", "test"),  # "Great!" is too short to be a twin
            ("random_s0", "u2", "red", "train"),
            ("random_s0", "u3", "green", "train"),
            ("random_s0", "u3", "blue", "train"),
        ],
        columns=["split_id", "user_id", "item_id", "fold"],
    )
    splits = pd.DataFrame({"split_id": ["random_s0"], "protocol": ["random"]})
    checks = split_checks(INTERACTIONS, assignments, splits, CONFIG)["random_s0"]
    assert checks["held_out_pairs"] == 3
    assert checks["held_out_with_same_user_twin"] == pytest.approx(2 / 3)
    assert checks["folds"]["test"] == {"ratings": 2, "users": 2}
    assert checks["ranking_candidates"] == 3
    card = data_card(INTERACTIONS, None, assignments, splits, CONFIG)
    codes = {(w["code"], tuple(w["splits"])) for w in card["warnings"]}
    assert ("variant_duplicates", ("random_s0",)) in codes and ("text_twins", ("random_s0",)) in codes
    assert ("small_fold", ("random_s0",)) in codes  # validation has 1 rating, under 2
    # the run's K judges the candidates when the run is judged: 3 are enough at K = 3, not at K = 4
    at_three = verdict_gates(card, ["random_s0"], k=3)["random_s0"]["ranking"]  # withheld for small_fold only
    assert "few_candidates" not in at_three and "small_fold" in at_three
    few = verdict_gates(card, ["random_s0"], k=4)["random_s0"]["ranking"]
    assert "few_candidates: random_s0: only 3 items are ranking candidates, fewer than K = 4" in few


def test_text_copied_by_another_user_is_flagged_too():
    per_split = {
        "random_s0": {
            "protocol": "random",
            "folds": {f: {"ratings": 500, "users": 50} for f in ("train", "validation", "test")},
            "ranking_candidates": 100,
            "held_out_with_same_user_twin": 0.0,
            "held_out_with_any_user_twin": 0.3,  # templated reviews posted by many accounts
            "held_out_pairs": 1000,
        }
    }
    card = {"variant_duplicates": {"share": 0.0, "interactions": 0, "groups": 0}}
    found = threats(card, per_split, DataCardConfig())
    assert [w["code"] for w in found] == ["text_twins"] and "(any user: 30%)" in found[0]["message"]


def test_degenerate_protocols_are_flagged():
    per_split = {
        "cold_items_s0": {
            "protocol": "cold_items",
            "folds": {f: {"ratings": n, "users": n} for f, n in (("train", 900), ("validation", 3), ("test", 40))},
            "ranking_candidates": 8,
            "held_out_with_same_user_twin": 0.0,
            "held_out_with_any_user_twin": 0.0,
            "held_out_pairs": 43,
        }
    }
    card = {"variant_duplicates": {"share": 0.0, "interactions": 0, "groups": 0}}
    found = threats(card, per_split, DataCardConfig())
    assert [w["code"] for w in found] == ["small_fold", "small_fold"]
    gates = verdict_gates({"warnings": found, "splits": per_split}, ["cold_items_s0"], k=10)["cold_items_s0"]
    assert "only 8 items are ranking candidates, fewer than K = 10" in gates["ranking"]
    assert "validation fold has 3 ratings" in found[0]["message"]


def planted(tmp_path):
    """Reviews where u0 repeats one text on three variants (lines 1-3) and u1 on two (lines 4-5)."""
    lines = [
        review("u0", "red", 5, ts=1_400_000_001, text=SAME),
        review("u0", "blue", 5, ts=1_400_000_002, text=SAME),
        review("u0", "green", 4, ts=1_400_000_003, text=SAME.upper()),
        review("u1", "red", 3, ts=1_400_000_004, text="Nice colour but the buckle is weak."),
        review("u1", "blue", 3, ts=1_400_000_005, text="Nice colour but the buckle is weak."),
        review("u1", "green", 2, ts=1_400_000_006, text="A different review of a different strap."),
        review("u2", "red", 4, ts=1_400_000_007, text="Good."),
        review("u2", "blue", 4, ts=1_400_000_008, text="Good."),
    ]
    return resolve_dataset(write_lines(tmp_path / "r.json", lines))


def test_collapse_keeps_one_interaction_per_text_group_with_the_accounting_intact(tmp_path, ingest):
    con, accounting = ingest(planted(tmp_path), text_duplicates="collapse")
    a = accounting["interactions"]
    assert a["text_duplicates"] == 3 and a["kept"] == 5
    assert a["raw"] == a["kept"] + a["quarantined"] + a["exact_duplicates"] + a["superseded"] + a["text_duplicates"]
    kept = con.execute(f"SELECT user_id, item_id FROM {tables.CANONICAL['interactions']} ORDER BY ALL").fetchall()
    # the latest of each group stays (duplicate_policy 'latest'); "Good." is too short to be a duplicate
    assert kept == [("u0", "green"), ("u1", "blue"), ("u1", "green"), ("u2", "blue"), ("u2", "red")]
    logged = con.execute(
        f"SELECT line_no, kind, kept_line_no FROM {tables.DUPLICATES} WHERE kind = 'text_duplicate' ORDER BY line_no"
    ).fetchall()
    assert logged == [(1, "text_duplicate", 3), (2, "text_duplicate", 3), (4, "text_duplicate", 5)]
    counts = con.execute(f"SELECT text_duplicates FROM {tables.INGEST_COUNTS}").fetchone()
    assert counts == (3,)


def test_keep_leaves_them_and_error_names_the_lines(tmp_path, ingest):
    _, accounting = ingest(planted(tmp_path))
    assert accounting["interactions"]["kept"] == 8 and accounting["interactions"]["text_duplicates"] == 0
    expected = r"3 interaction\(s\) repeat .* user u0 at lines \[1, 2, 3\]; user u1 at lines \[4, 5\].*collapse"
    with pytest.raises(InputError, match=expected):
        ingest(planted(tmp_path), db=tmp_path / "other.duckdb", text_duplicates="error")


def test_condemned_splits_withhold_their_units_verdicts_with_the_reason_and_what_to_do():
    card = {
        "warnings": [
            {"code": "text_twins", "splits": ["random_s0"], "message": "random_s0: 84% of 500 held-out pairs ..."},
            {"code": "small_fold", "splits": ["kfold_s0_f2"], "message": "kfold_s0_f2: the validation fold ..."},
            {"code": "variant_duplicates", "splits": ["random_s0", "temporal_s0"], "message": "16% ..."},
        ],
        "splits": {
            "random_s0": {"ranking_candidates": 900},
            "temporal_s0": {"ranking_candidates": 900},
            "cold_items_s0": {"ranking_candidates": 8},
            "kfold_s0_f2": {"ranking_candidates": 900},
        },
    }
    gates = verdict_gates(card, ["random_s0", "temporal_s0", "cold_items_s0", "kfold_s0_f1", "kfold_s0_f2"], k=10)
    assert set(gates) == {"random_s0", "cold_items_s0", "kfold_s0"}  # a fold condemns its whole unit
    assert gates["random_s0"]["rating"].startswith("text_twins: random_s0: 84%")
    assert "--text-duplicates collapse" in gates["random_s0"]["ranking"]
    assert set(gates["cold_items_s0"]) == {"ranking"}  # too few candidates says nothing of ratings
    assert "fewer than K = 10" in gates["cold_items_s0"]["ranking"]
    assert "--protocols kfold" in gates["kfold_s0"]["rating"]
    assert "temporal_s0" not in gates  # variant duplicates alone do not withhold (their twins would)
    assert verdict_gates(card, ["cold_items_s0"], k=5) == {}  # 8 candidates are enough for K = 5


def test_unit_sizes_pool_the_folds_and_say_what_a_test_could_detect():
    from scipy import stats

    assignments = pd.DataFrame(
        [("kfold_s0_f1", "u0", "a", "test"), ("kfold_s0_f2", "u0", "b", "test"), ("kfold_s0_f2", "u1", "a", "test")]
        + [("random_s0", f"u{i}", "a", "test") for i in range(16)]
        + [("random_s0", "u0", "b", "train")],
        columns=["split_id", "user_id", "item_id", "fold"],
    )
    units = unit_sizes(assignments)
    assert units["kfold_s0"]["test_ratings"] == 3 and units["kfold_s0"]["test_users"] == 2
    assert units["kfold_s0"]["splits"] == ["kfold_s0_f1", "kfold_s0_f2"]
    # two units x 6 planned tests: alpha 0.05 / 12; 16 users: (z + z) / 4 per-user standard deviations
    z = stats.norm.ppf(1 - 0.05 / 12 / 2) + stats.norm.ppf(0.8)
    assert units["random_s0"]["detectable_sd"] == pytest.approx(z / 4)


def test_cold_items_without_metadata_withhold_only_the_text_models_verdicts():
    """A cold-item split whose cold test items have no metadata: the card counts them by field, and the gate
    withholds the verdicts of the models that read text (the LM), never the fusion's or another model's."""
    from models.evaluation.comparisons import judge

    assignments = pd.DataFrame(
        [
            ("cold_items_s0", "u0", "red", "train"),
            ("cold_items_s0", "u1", "red", "train"),
            ("cold_items_s0", "u2", "red", "validation"),
            ("cold_items_s0", "u3", "green", "test"),
            ("cold_items_s0", "u3", "blue", "test"),
        ],
        columns=["split_id", "user_id", "item_id", "fold"],
    )
    splits = pd.DataFrame({"split_id": ["cold_items_s0"], "protocol": ["cold_items"]})
    config = DataCardConfig(min_fold_ratings=1, min_fold_users=1)
    items = pd.DataFrame({"item_id": ["red", "green", "blue"], "title": ["Red strap", None, " "], "brand": [None] * 3})
    card = data_card(INTERACTIONS, items, assignments, splits, config)
    cold = card["splits"]["cold_items_s0"]["cold_test_items"]
    assert cold == {"items": 2, "with_metadata": 0, "fields": {"title": 0, "brand": 0}}  # blank titles do not count
    gates = verdict_gates(card, ["cold_items_s0"], k=2)
    assert set(gates["cold_items_s0"]) == {"rating@text", "ranking@text"}
    assert "0 of 2 cold test items have metadata" in gates["cold_items_s0"]["rating@text"]
    measured = pd.DataFrame(
        {
            "split_id": "cold_items_s0",
            "model": ["lm_two_tower", "fusion"],
            "k": 0,
            "family": "primary",
            "t_p": 0.001,
            "wilcoxon_p": 0.001,
            "se": 0.01,
            "diff": -0.1,
            "ci_low": -0.12,
            "ci_high": -0.08,
            "share_better": 0.7,
            "share_worse": 0.3,
            "n_users": 50,
            "metric": "mse",
            "segment": "all",
            "reference": "svd",
            "kind": "best_traditional",
            "reference_rule": "validation",
            "reference_validation": 0.9,
            "test_best": "svd",
            "value": 0.8,
            "reference_value": 0.9,
            "mean_user_diff": -0.1,
            "median_user_diff": -0.1,
        }
    )
    verdicts = judge(measured, gates, text_models=("lm_two_tower",)).set_index("model")["verdict"]
    assert verdicts["lm_two_tower"] == "not judged" and verdicts["fusion"] != "not judged"

    items.loc[1, "title"] = "Green strap"  # one of the two cold items now has a title: half, not under half
    card = data_card(INTERACTIONS, items, assignments, splits, config)
    assert card["splits"]["cold_items_s0"]["cold_test_items"]["fields"] == {"title": 1, "brand": 0}
    assert verdict_gates(card, ["cold_items_s0"], k=2) == {}
