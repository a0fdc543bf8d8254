"""The cross-dataset study: its pure report functions by hand, and the flow on two tiny hand-made datasets
(one failing validation) with a tiny transformer."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from builders import TINY_BERT, review, write_lines

from models.evaluation.comparisons import DIFFERENCE_COLUMNS


def test_skewness_by_hand():
    from reports.study import skewness

    # ratings 1, 5, 5, 5: mean 4, deviations -3, 1, 1, 1: m2 = 3, m3 = (-27 + 3) / 4 = -6
    assert skewness({1.0: 1, 5.0: 3}) == pytest.approx(-6 / 3**1.5)
    assert skewness({3.0: 10}) == 0.0


def _diff(dataset, split, segment, model, diff, ci_low, ci_high, reference_value, verdict):
    row = dict.fromkeys(DIFFERENCE_COLUMNS)
    row.update(
        split_id=split,
        metric="mse",
        k=0,
        segment=segment,
        model=model,
        reference="bias_als",
        kind="vs_best_traditional",
        n_users=50,
        value=reference_value + diff,
        reference_value=reference_value,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        t_p_holm=0.01 if verdict != "no detectable difference" else 0.5,
        verdict=verdict,
        tests_disagree=False,
        share_better=0.5,
        share_worse=0.4,
    )
    return row


def _dataset(name, rows):
    return {
        "name": name,
        "status": "completed",
        "differences": pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS + ["split_id"]),
        "fits": pd.DataFrame(columns=["split_id", "model", "params", "fit_seconds", "eval_seconds", "extras"]),
        "splits": pd.DataFrame({"split_id": ["random_s0"], "protocol": ["random"], "seed": [0]}),
        "card": {"warnings": []},
    }


def test_segments_are_pooled_as_relative_differences_inverse_variance_weighted():
    from reports.study import pooled_segments

    z = 1.959963984540054
    a = _dataset("a", [_diff("a", "random_s0", "users:≤3", "lm_two_tower", -0.10, -0.15, -0.05, 1.0, "better")])
    b = _dataset(
        "b", [_diff("b", "random_s0", "users:≤3", "lm_two_tower", 0.02, -0.02, 0.06, 0.5, "no detectable difference")]
    )
    table = pooled_segments([a, b, {"name": "c", "status": "failed", "error": "x"}])
    row = table[(table["segment"] == "users:≤3") & (table["model"] == "lm_two_tower")].iloc[0]
    # relative differences -0.10 and +0.04; standard errors 0.05 / z and (0.04 / z) / 0.5 = 0.08 / z
    w = np.array([(z / 0.05) ** 2, (z / 0.08) ** 2])
    estimate = (w * np.array([-0.10, 0.04])).sum() / w.sum()
    error = math.sqrt(1 / w.sum())
    assert row["pooled relative difference"] == f"{estimate:+.1%}"
    assert row["95% CI"] == f"[{estimate - z * error:+.1%}, {estimate + z * error:+.1%}]"
    assert row["better / worse / no difference / too few"] == "1 / 0 / 1 / 0" and row["datasets"] == 2
    alone = pooled_segments([a])
    assert alone.iloc[0]["pooled relative difference"].startswith("not pooled")


def test_conclusions_say_so_when_nothing_is_significant_and_name_failures():
    from reports.study import conclusions

    a = _dataset(
        "a", [_diff("a", "random_s0", "all", "lm_two_tower", 0.01, -0.02, 0.04, 1.0, "no detectable difference")]
    )
    # a "better" on a metric the verdict does not judge (AUC) is no help in the bottom line
    auc = _diff("a", "random_s0", "all", "lm_two_tower", 0.05, 0.02, 0.08, 0.5, "better") | {"metric": "auc", "k": 10}
    a["differences"] = pd.concat([a["differences"], pd.DataFrame([auc])], ignore_index=True)
    lines = conclusions([a, {"name": "broken", "status": "failed", "error": "ValidationFailed: x"}])
    assert lines[0] == (
        "Bottom line: on no dataset does the fine-tuned LM beat the best traditional model detectably (MSE or NDCG)."
    )
    assert (
        "not detectably different from the best traditional model on any of 1 dataset × split comparisons" in lines[1]
    )
    assert lines[-1] == "Not compared (their experiment did not complete): broken."


MODELS = ("global_mean", "bias_als", "popularity", "lm_two_tower", "fusion")


@pytest.mark.slow
def test_the_study_runs_every_dataset_and_reports_a_failed_one(prefect_harness, tmp_path):
    from flows.params import FullParams, PrepareParams, StudyParams, TrainParams
    from flows.study import study
    from models.evaluation.harness import EvalConfig
    from models.registry import TrainConfig
    from reports.conclusions import verdict_rows
    from tasks.report import load_run_tables

    good = write_lines(
        tmp_path / "alpha.json",
        [
            review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i, text=f"t{i}")
            for i in range(64)
        ],
    )
    # a third of the ratings out of the 1-5 scale: quarantined beyond the 1% validation allows
    broken = write_lines(
        tmp_path / "broken.json",
        [review(f"u{i // 8}", f"i{i % 12}", 9 if i % 3 == 0 else 4, ts=1_400_000_000 + i) for i in range(64)],
    )
    tiny_lm = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1}
    params = StudyParams(
        data=(str(good), str(broken)),
        experiment=FullParams(
            prepare=PrepareParams(split={"protocols": ("random", "temporal")}),
            train=TrainParams(
                train=TrainConfig(models=MODELS, lm_overrides=tiny_lm), evaluation=EvalConfig(n_boot=100)
            ),
        ),
        workspaces=str(tmp_path / "ws"),
        output=str(tmp_path / "study"),
    )
    out = study(params)
    assert out["datasets"]["alpha"]["status"] == "completed"
    assert out["datasets"]["broken"]["status"] == "failed" and "quarantine" in out["datasets"]["broken"]["error"]
    markdown = open(out["markdown"]).read()
    first_screen = markdown.split("## Where")[0]
    assert "> **Warning.** broken: the experiment did not complete: " in first_screen
    assert "Not compared (their experiment did not complete): broken." in first_screen
    # the study's verdict rows are the dataset's own experiment's, cell for cell
    alpha = out["datasets"]["alpha"]
    frames = load_run_tables(tmp_path / "ws" / "alpha" / "reclab.duckdb", alpha["run_id"])
    own = verdict_rows(frames["differences"], frames["fits"], frames["splits"], frames["card"])
    assert len(own) > 0
    for _, row in own.iterrows():
        line = f"| alpha | {row['split']} | {row['protocol']} | {row['task']} | {row['best traditional']} | {row['LM − best']} | {row['fusion − best']} |"
        assert line in markdown
    traits = markdown.split("## Where: the datasets' traits")[1].split("## ")[0]
    assert "| alpha | 64 | 8 | 12 |" in traits
    cost = markdown.split("## Cost")[1]
    lm_cost = next(line for line in cost.splitlines() if line.startswith("| alpha | lm_two_tower |"))
    assert float(lm_cost.split("|")[4]) > 0  # peak memory recorded
    assert (tmp_path / "study" / "study.html").exists()
    assert json.loads(json.dumps(out["datasets"]["alpha"]))["run_id"] == alpha["run_id"]


def test_traits_read_the_data_card():
    from reports.study import traits

    card = {
        "interactions": 10,
        "users": 3,
        "items": 4,
        "density": 10 / 12,
        "ratings": {"1": 1, "5": 9},
        "rating_mean": 4.6,
        "per_user": {"median": 3.0},
        "per_item": {"median": 2.5},
        "users_with_at_most_3": 2 / 3,
        "review_coverage": 0.9,
        "review_words": {"median": 12.0},
        "metadata_coverage": {"items": 0.75},
        "splits": {
            "cold_items_s0": {"protocol": "cold_items", "ranking_candidates": 2},
            "random_s0": {"protocol": "random", "ranking_candidates": 4},
        },
        "warnings": [{"code": "small_fold"}, {"code": "small_fold"}],
    }
    (row,) = traits([{"name": "toy", "status": "completed", "card": card}]).to_dict(orient="records")
    assert row["cold-item candidates"] == 2 and row["users with ≤ 3 ratings"] == "67%"
    assert row["metadata coverage (items)"] == "75%" and row["data warnings"] == "small_fold"
    assert row["rating skew"] == round((0.1 * (-3.6) ** 3 + 0.9 * 0.4**3) / (0.1 * 3.6**2 + 0.9 * 0.4**2) ** 1.5, 2)
