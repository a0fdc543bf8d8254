"""The cross-dataset study: its pure report functions by hand, and the flow on two tiny hand-made datasets
(one failing validation) with a tiny transformer."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from builders import TINY_BERT, review, write_lines

from models.evaluation.comparisons import DIFFERENCE_COLUMNS


def test_skewness_by_hand():
    from reports.study import skewness

    # ratings 1, 5, 5, 5: mean 4, deviations -3, 1, 1, 1: m2 = 3, m3 = (-27 + 3) / 4 = -6
    assert skewness({1.0: 1, 5.0: 3}) == pytest.approx(-6 / 3**1.5)
    assert skewness({3.0: 10}) == 0.0


def _diff(dataset, split, segment, model, diff, se, reference_value, verdict, metric="mse", **fields):
    row = dict.fromkeys(DIFFERENCE_COLUMNS)
    z = 1.959963984540054
    primary = segment == "all"
    row.update(
        split_id=split,
        metric=metric,
        k=10 if metric == "ndcg" else 0,
        segment=segment,
        model=model,
        reference="bias_als",
        kind="vs_best_traditional",
        family="primary" if primary else "secondary",
        n_users=50,
        value=reference_value + diff,
        reference_value=reference_value,
        diff=diff,
        se=se,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        t_p=0.01,
        t_p_adj=0.01 if verdict != "no detectable difference" else 0.5,
        mdd=2.8 * se,
        verdict=verdict,
        tests_disagree=False,
        share_better=0.5,
        share_worse=0.4,
    )
    row.update(fields)
    return row


def _dataset(name, rows, protocol="random"):
    return {
        "name": name,
        "status": "completed",
        "differences": pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS + ["split_id"]),
        "fits": pd.DataFrame(columns=["split_id", "model", "params", "fit_seconds", "eval_seconds", "extras"]),
        "splits": pd.DataFrame({"split_id": [f"{protocol}_s0"], "protocol": [protocol], "seed": [0]}),
        "card": {"warnings": []},
    }


def test_segments_are_pooled_as_relative_differences_by_random_effects():
    from models.evaluation.inference import random_effects
    from reports.study import pooled_segments

    a = _dataset("a", [_diff("a", "random_s0", "users:≤3", "lm_two_tower", -0.10, 0.05 / 1.959964, 1.0, "better")])
    b = _dataset(
        "b",
        [_diff("b", "random_s0", "users:≤3", "lm_two_tower", 0.02, 0.02 / 1.959964, 0.5, "no detectable difference")],
    )
    table = pooled_segments([a, b, {"name": "c", "status": "failed", "error": "x"}])
    row = table[(table["segment"] == "users:≤3") & (table["model"] == "lm_two_tower")].iloc[0]
    # relative differences -0.10 and +0.04, standard errors 0.05 / z and 0.04 / z (over the reference value)
    pooled = random_effects([-0.10, 0.04], [0.05 / 1.959964, 0.04 / 1.959964])
    assert pooled["tau2"] > 0  # they disagree beyond chance: random effects widen the CI
    assert row["pooled relative difference"] == f"{pooled['estimate']:+.1%}"
    assert row["95% CI"] == f"[{pooled['ci_low']:+.1%}, {pooled['ci_high']:+.1%}]"
    assert row["better / worse / n.s. / too few or not judged"] == "1 / 0 / 1 / 0" and row["datasets"] == 2
    alone = pooled_segments([a])
    assert alone.iloc[0]["pooled relative difference"].startswith("not pooled")


def _three(fusion_diffs, verdicts, judged=(True, True, True)):
    """Three datasets' random-split primary rows of the fusion on MSE (reference value 1: relative = absolute)."""
    out = []
    for name, d, verdict, ok in zip("abc", fusion_diffs, verdicts, judged, strict=True):
        row = _diff(name, "random_s0", "all", "fusion", d, 0.01, 1.0, verdict if ok else "not judged")
        if not ok:
            row.update(note="text_twins: ... What to do: collapse.", t_p_adj=float("nan"))
        out.append(_dataset(name, [row]))
    return out


def test_the_meta_analysis_pools_judged_datasets_and_counts_where_the_contender_replicates():
    from scipy import stats

    from models.evaluation.inference import random_effects, replicability_count
    from reports.study import meta_analysis

    datasets = _three([-0.05, -0.04, -0.03], ["better", "better", "better"])
    meta = meta_analysis(datasets).set_index(["protocol", "contender", "metric"])
    row = meta.loc[("random", "fusion", "mse")]
    pooled = random_effects([-0.05, -0.04, -0.03], [0.01, 0.01, 0.01])
    assert row["estimate"] == pytest.approx(pooled["estimate"]) and row["tau2"] == pytest.approx(pooled["tau2"])
    assert row["i2"] == pytest.approx(pooled["i2"]) and row["judged"] == 3
    # one-sided p of "better" per dataset: t = diff / se with 49 degrees of freedom (50 users)
    one_sided = [stats.t.sf(5.0, 49), stats.t.sf(4.0, 49), stats.t.sf(3.0, 49)]
    assert row["better on at least"] == replicability_count(one_sided, 0.05) == 3
    assert row["holm_p"] == pytest.approx(row["p"])  # one analysis: Holm changes nothing
    # a condemned dataset counts nowhere: two judged, the third not pooled
    gated = meta_analysis(_three([-0.05, -0.04, -0.5], ["better", "better", "better"], (True, True, False)))
    assert gated.iloc[0]["judged"] == 2 and gated.iloc[0]["better / worse / n.s. / not judged"] == "2 / 0 / 0 / 1"
    assert gated.iloc[0]["estimate"] == pytest.approx(random_effects([-0.05, -0.04], [0.01, 0.01])["estimate"])


def test_conclusions_say_so_when_nothing_is_significant_and_name_failures():
    from reports.study import conclusions

    a, b = _three([0.01, -0.01, 0.0], ["no detectable difference"] * 3)[:2]
    # a "better" on a metric the verdict does not judge (AUC) is no help in the bottom line
    auc = _diff("a", "random_s0", "all", "lm_two_tower", 0.05, 0.01, 0.5, "better", metric="auc", family="secondary")
    a["differences"] = pd.concat([a["differences"], pd.DataFrame([auc])], ignore_index=True)
    lines = conclusions([a, b, {"name": "broken", "status": "failed", "error": "ValidationFailed: x"}])
    assert lines[0].startswith(
        "Bottom line: in none of the 1 analyses pooled across datasets do the fine-tuned LM or the fusion differ "
        "detectably from the reference (the pooled tests could see"
    )
    assert any("each dataset's own primary test: better on 0 of 2 judged units" in line for line in lines)
    assert lines[-1] == "Not compared (their experiment did not complete): broken."


def test_conclusions_lead_with_a_pooled_gain_and_its_replication():
    from reports.study import conclusions

    lines = conclusions(_three([-0.05, -0.04, -0.03], ["better"] * 3))
    assert lines[0].startswith(
        "Bottom line (1 pooled analyses across datasets, Holm-corrected): the fusion is better on "
    )
    assert "better on at least 3 of 3 datasets" in lines[0]
    assert "The fusion is better than the reference on at least 3 of 3 judged datasets" in lines[1]


def test_the_study_report_opens_in_short_from_the_pooled_rows():
    from reports.study import in_short, meta_analysis, study_blocks

    datasets = _three([-0.05, -0.04, -0.03], ["better"] * 3)
    pooled = meta_analysis(datasets).iloc[0]["estimate"]  # reference value 1: relative = absolute
    lines = in_short(datasets)
    assert lines == [
        f"The fusion rates {100 * abs(pooled):.1f}% better than the reference, pooled over 3 datasets (random "
        f"rating (MSE) {100 * pooled:+.1f}%; significant)."
    ]
    blocks = study_blocks(datasets, {"study_id": "s"})
    assert blocks[1] == ("h2", "In short") and blocks[2] == ("ul", lines)
    figure = blocks[3]  # one figure under the lines: both tasks, every dataset and the pooled diamond
    assert figure[:2] == ("figure", "study_in_short") and figure[3].startswith(b"\x89PNG")
    assert sum(b[0] == "figure" for b in blocks) == 1
    from reports.study import study_forest

    assert study_forest(_three([-0.05, -0.04, -0.03], ["better"] * 3, (False, False, False))) is None  # none judged
    # nothing significant: the largest difference the pooled tests could see; a failure named
    flat = _three([0.01, -0.01, 0.0], ["no detectable difference"] * 3)
    seen = meta_analysis(flat).iloc[0]["detectable"]
    lines = in_short([*flat, {"name": "broken", "status": "failed", "error": "x"}])
    assert lines[0] == (
        f"The fusion rates as well as the reference, pooled over datasets (no difference as large as "
        f"{100 * abs(seen):.1f}%, what the pooled tests could see)."
    )
    assert lines[-1] == "Not compared (their experiment did not complete): broken."


MODELS = ("global_mean", "bias_als", "popularity", "lm_two_tower", "fusion")


@pytest.mark.slow
def test_the_study_runs_every_dataset_and_reports_a_failed_one(prefect_harness, tmp_path):
    from flows.params import ExperimentSettings, PrepareSettings, StudyParams, TrainSettings
    from flows.study import study
    from models.evaluation import EvalConfig
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
        experiment=ExperimentSettings(
            # 64 ratings: fold-size thresholds this small, so that the tiny dataset's verdicts are not withheld
            prepare=PrepareSettings(
                split={"protocols": ("random", "temporal")}, data_card={"min_fold_ratings": 2, "min_fold_users": 2}
            ),
            train=TrainSettings(
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
    own = verdict_rows(frames["differences"], frames["splits"])
    assert len(own) > 0
    for _, row in own.iterrows():
        line = "| alpha | " + " | ".join(str(v) for v in row.to_numpy()) + " |"
        assert line in markdown
    traits = markdown.split("## Where: the datasets' traits")[1].split("## ")[0]
    assert "| alpha | 64 | 8 | 12 |" in traits
    cost = markdown.split("## Cost")[1]
    lm_cost = next(line for line in cost.splitlines() if line.startswith("| alpha | lm_two_tower |"))
    assert float(lm_cost.split("|")[4]) > 0  # peak memory recorded
    assert (tmp_path / "study" / "study.html").exists()
    assert json.loads(json.dumps(out["datasets"]["alpha"]))["run_id"] == alpha["run_id"]
    # --report-only: nothing trained, the same run's verdict rows written again from the workspace
    again = study(params.model_copy(update={"report_only": True, "output": str(tmp_path / "again")}))
    assert again["datasets"]["alpha"]["run_id"] == alpha["run_id"]
    assert again["datasets"]["broken"]["status"] == "failed"  # its workspace holds no evaluated run
    rewritten = open(again["markdown"]).read()
    assert all(("| alpha | " + " | ".join(str(v) for v in r.to_numpy()) + " |") in rewritten for _, r in own.iterrows())


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


def test_a_pooled_loss_is_said_as_one_and_identical_datasets_are_not_pooled():
    from reports.study import conclusions, meta_analysis, meta_table

    lines = conclusions(_three([0.05, 0.04, 0.06], ["worse"] * 3))
    assert "the fusion is worse on random rating (MSE), pooled +5.0%" in lines[0]
    assert "worse in 3 of the 3 datasets' own tests" in lines[0] and "better on at least" not in lines[0]
    # the fusion reduced to the reference on every dataset: nothing to pool, said so
    same = _three([0.0, 0.0, 0.0], ["no detectable difference"] * 3)
    for d in same:
        d["differences"]["se"] = 0.0
    meta = meta_analysis(same)
    assert not meta.iloc[0]["pooled"] and meta.iloc[0]["identical"] == 3
    cell = meta_table(meta).iloc[0]["pooled relative difference [95% CI]"]
    assert cell == "not pooled: identical to the reference on every judged dataset"


def test_each_share_of_training_and_fine_tuning_are_analyses_of_their_own():
    """Reduced splits pool per share, never with the full split of the same dataset; the fine-tuned LM against
    its frozen encoder pools under its own name; the sparsity table carries each dataset's shares."""
    from models.evaluation.inference import random_effects
    from reports.study import meta_analysis, sparsity

    def rows(name, shift):
        out = []
        for split, diff in (("random_s0", -0.02), ("random_s0_t10", -0.06)):
            out.append(_diff(name, split, "all", "lm_two_tower", diff + shift, 0.01, 1.0, "better"))
            out.append(
                _diff(
                    name,
                    split,
                    "all",
                    "lm_two_tower",
                    -0.03,
                    0.01,
                    1.0,
                    "better",
                    reference="text_frozen",
                    kind="vs_ablation",
                )
            )
        return out

    datasets = []
    for name, shift in (("a", 0.0), ("b", 0.01)):
        d = _dataset(name, rows(name, shift))
        d["splits"] = pd.DataFrame(
            {"split_id": ["random_s0", "random_s0_t10"], "protocol": ["random", "random"], "seed": [0, 0]}
        )
        datasets.append(d)
    meta = meta_analysis(datasets).set_index(["protocol", "contender"])
    assert set(meta.index) == {
        ("random", "lm_two_tower"),
        ("random (10% of training)", "lm_two_tower"),
        ("random", "lm_two_tower vs text_frozen"),
        ("random (10% of training)", "lm_two_tower vs text_frozen"),
    }
    tenth = meta.loc[("random (10% of training)", "lm_two_tower")]
    assert tenth["datasets"] == 2 and tenth["estimate"] == pytest.approx(
        random_effects([-0.06, -0.05], [0.01, 0.01])["estimate"]
    )
    curves, table = sparsity(datasets)
    assert list(table.columns[:2]) == ["dataset", "unit"] and len(table) == 8  # 2 datasets x 2 shares x 2 questions
    assert set(curves["fraction"]) == {0.1, 1.0} and set(curves["question"]) == {
        "lm_two_tower vs reference",
        "lm_two_tower vs text_frozen",
    }
