"""The report: conclusions generated from the numbers, Markdown + self-contained HTML, atomic files."""

from __future__ import annotations

import json
import re

import pandas as pd

from models.evaluation.comparisons import DIFFERENCE_COLUMNS
from reports.conclusions import number, overall_answer, seed_summary, verdict_rows
from reports.render import build, colour_of, to_html, to_markdown
from tasks.report import write_report_files

MODELS = {"bias_als": 0.75, "lightfm_hybrid": 0.80, "lm_two_tower": 0.78, "fusion": 0.70}


def result_rows(split_id="random_s0", shift=0.0):
    rows = []
    for model, mse in MODELS.items():
        mse += shift
        rows.append((split_id, model, "mse", 0, "all", mse, mse - 0.05, mse + 0.05, 100))
        rows.append((split_id, model, "rmse", 0, "all", mse**0.5, (mse - 0.05) ** 0.5, (mse + 0.05) ** 0.5, 100))
        sparse = mse + (0.1 if model == "bias_als" else 0.02)
        rows.append((split_id, model, "mse", 0, "users:≤3", sparse, sparse - 0.2, sparse + 0.2, 20))
        ndcg = {"bias_als": 0.02, "lightfm_hybrid": 0.06, "lm_two_tower": 0.03, "fusion": 0.05}[model]
        rows.append((split_id, model, "ndcg", 10, "all", ndcg, ndcg - 0.01, ndcg + 0.01, 100))
    return pd.DataFrame(
        rows, columns=["split_id", "model", "metric", "k", "segment", "value", "ci_low", "ci_high", "n_users"]
    )


def diff(split_id, metric, model, reference, kind="vs_best_traditional", segment="all", **fields):
    value = fields.pop("value", MODELS.get(model, 0.5))
    ref = fields.pop("reference_value", MODELS.get(reference, 0.5))
    row = {
        "split_id": split_id,
        "metric": metric,
        "k": 10 if metric == "ndcg" else 0,
        "segment": segment,
        "model": model,
        "reference": reference,
        "kind": kind,
        "n_users": 100,
        "value": value,
        "reference_value": ref,
        "diff": value - ref,
        "ci_low": value - ref - 0.01,
        "ci_high": value - ref + 0.01,
        "mean_user_diff": value - ref,
        "median_user_diff": value - ref,
        "share_better": 0.6,
        "share_worse": 0.3,
        "t_p": 0.001,
        "wilcoxon_p": 0.002,
        "t_p_holm": 0.003,
        "wilcoxon_p_holm": 0.004,
        "verdict": "better",
        "tests_disagree": False,
    }
    row.update(fields)
    return row


def differences(split_id="random_s0"):
    rows = [
        # rating: the fusion significantly better than bias_als; the LM no detectable difference
        diff(split_id, "mse", "fusion", "bias_als", ci_low=-0.07, ci_high=-0.03),
        diff(
            split_id,
            "mse",
            "lm_two_tower",
            "bias_als",
            ci_low=-0.02,
            ci_high=0.08,
            t_p_holm=0.4,
            wilcoxon_p_holm=0.5,
            verdict="no detectable difference",
        ),
        diff(split_id, "mse", "fusion", "lm_two_tower", kind="vs_component"),
        # sparse users: the LM better, on 40 users; a 5-user segment is too small
        diff(
            split_id,
            "mse",
            "lm_two_tower",
            "bias_als",
            segment="users:≤3",
            n_users=40,
            value=0.80,
            reference_value=0.85,
        ),
        diff(
            split_id,
            "mse",
            "lm_two_tower",
            "bias_als",
            segment="users:>25",
            n_users=5,
            ci_low=float("nan"),
            ci_high=float("nan"),
            t_p=float("nan"),
            t_p_holm=float("nan"),
            wilcoxon_p_holm=float("nan"),
            verdict="too few users",
        ),
        # ranking: fusion vs lightfm: mean higher, but most users worse (the tests disagree)
        diff(
            split_id,
            "ndcg",
            "fusion",
            "lightfm_hybrid",
            verdict="no detectable difference",
            t_p_holm=0.2,
            wilcoxon_p_holm=0.001,
            share_better=0.2,
            share_worse=0.6,
            median_user_diff=-0.01,
            value=0.0600001,
            reference_value=0.06,
            tests_disagree=True,
        ),
        diff(split_id, "ndcg", "lm_two_tower", "lightfm_hybrid", verdict="worse", ci_low=-0.04, ci_high=-0.02),
    ]
    return pd.DataFrame(rows, columns=["split_id", *DIFFERENCE_COLUMNS])


def fits_rows(split_id="random_s0"):
    params = {
        "rating_weights_": {"global": {"intercept": 0.1, "bias_als": 0.6, "lm_two_tower": 0.4}},
        "ranking_weights_": {"lightfm_hybrid": 0.7, "lm_two_tower": 0.3},
    }
    return pd.DataFrame(
        [
            (split_id, m, json.dumps(params if m == "fusion" else {}), s, 1.0)
            for m, s in (("bias_als", 2.0), ("lightfm_hybrid", 8.0), ("lm_two_tower", 300.0), ("fusion", 3.0))
        ],
        columns=["split_id", "model", "params", "fit_seconds", "eval_seconds"],
    )


def test_verdict_says_better_only_when_significant_with_direction_and_numbers():
    verdicts = verdict_rows(differences(), fits_rows(), pd.DataFrame()).set_index("task")
    rating = verdicts.loc["rating (MSE)"]
    assert rating["best traditional"] == "bias_als 0.7500"
    assert rating["fusion − best"] == "0.7000: -0.0500 [-0.0700, -0.0300], p = 0.003 (better)"
    assert "fusion is better than the best traditional model bias_als (MSE -0.0500" in rating["answer"]
    assert (
        "lm_two_tower: no detectable difference from bias_als (MSE +0.0300 [-0.0200, +0.0800], p = 0.4)"
        in (rating["answer"])
    )
    assert "better than lm_two_tower" in rating["answer"]  # the fusion against its component
    ranking = verdicts.loc["ranking (NDCG@10)"]
    # a difference that rounds to zero is never "-0"; the disagreeing tests are put in words
    assert (
        "no detectable difference from the best traditional model lightfm_hybrid (NDCG@10 ±0.0000"
        in (ranking["answer"])
    )
    assert (
        "the means do not differ detectably, but per-user ranks do (20% of users are served better, 60% worse, "
        "the rest equally; median per-user difference -0.0100; Wilcoxon p = 0.001)"
    ) in ranking["answer"]
    assert "lm_two_tower is worse than lightfm_hybrid" in ranking["answer"]
    lines = overall_answer(verdicts, differences())
    assert lines[0] == (
        "Bottom line: the fusion beats the best traditional model in 1 of 2 split × task comparisons and loses in 0; "
        "the fine-tuned LM alone beats the best traditional model in 0 of 2 split × task comparisons and loses in 1."
    )
    assert (
        "Rating (MSE): the fusion is significantly better than the best traditional model on 1 of 1 splits"
        in (lines[1])
    )


def test_opposite_mean_and_typical_user_are_said_in_words():
    from reports.conclusions import disagreement

    row = pd.Series(
        diff(
            "s",
            "mse",
            "fusion",
            "bias_als",
            share_better=0.35,
            share_worse=0.6,
            median_user_diff=0.02,
            tests_disagree=True,
        )
    )
    assert disagreement(row).startswith(
        "the tests disagree: the mean improves, but most users are served worse (35% of users are served better, "
        "60% worse, the rest equally"
    )


def test_a_fusion_reduced_to_one_component_is_named():
    fits = fits_rows()
    params = {
        "blender_": {"single": "lm_two_tower"},
        "rating_weights_": {"global": {"intercept": 0.0, "bias_als": 0.0, "lm_two_tower": 1.0}},
        "ranking_weights_": {"lightfm_hybrid": 1.0, "lm_two_tower": 0.0},
    }
    fits.loc[fits["model"] == "fusion", "params"] = json.dumps(params)
    verdicts = verdict_rows(differences(), fits, pd.DataFrame()).set_index("task")
    assert "here the fusion is lm_two_tower alone" in verdicts.loc["rating (MSE)", "answer"]
    assert "here the fusion is lightfm_hybrid alone" in verdicts.loc["ranking (NDCG@10)", "answer"]
    markdown, _ = to_markdown(build(result_rows(), differences(), fits, pd.DataFrame(), {"dataset": "toy"}))
    assert "The fusion reduced to one component: rating: lm_two_tower alone, ranking: lightfm_hybrid alone." in markdown


def test_for_whom_lists_significant_segments_and_names_the_small_ones():
    markdown, _ = to_markdown(build(result_rows(), differences(), fits_rows(), pd.DataFrame(), {"dataset": "toy"}))
    whom = markdown.split("## For whom")[1].split("## Cost")[0]
    assert (
        "| random_s0 | users:≤3 | MSE | lm_two_tower | bias_als | 40 | -0.0500 [-0.0600, -0.0400], p = 0.003 | better |"
        in whom
    )
    assert "users:>25" not in whom.split("Too few users")[0]
    assert "Too few users to judge (not tested): random_s0 users:>25 (n=5)." in whom


def test_data_card_warnings_open_the_report_and_mark_every_affected_verdict():
    card = {
        "warnings": [{"code": "text_twins", "splits": ["random_s0"], "message": "random_s0: 90% of held-out pairs..."}],
        "interactions": 10,
        "users": 2,
        "items": 5,
        "density": 1.0,
        "ratings": {"5": 10},
        "rating_mean": 5.0,
        "per_user": {},
        "per_item": {},
        "users_with_at_most_3": 0.0,
        "review_coverage": 1.0,
        "review_words": {},
        "metadata_coverage": None,
        "variant_duplicates": {"share": 0.0, "interactions": 0, "groups": 0},
        "splits": {},
    }
    blocks = build(result_rows(), differences(), fits_rows(), pd.DataFrame(), {"dataset": "toy"}, card)
    assert blocks[2] == ("warn", ["Data card: random_s0: 90% of held-out pairs..."])
    verdict = next(b[1] for b in blocks if b[0] == "table")
    assert set(verdict["data warnings"]) == {"text_twins"}
    markdown, _ = to_markdown(blocks)
    assert markdown.index("> **Warning.** Data card") < markdown.index("## Verdict") < markdown.index("## Data card")


def test_every_number_in_the_verdict_appears_in_the_appendix():
    markdown, _ = to_markdown(build(result_rows(), differences(), fits_rows(), pd.DataFrame(), {"dataset": "toy"}))
    verdict = markdown.split("## Verdict")[1].split("## For whom")[0]
    appendix = markdown.split("## Appendix")[1]
    for value in re.findall(r"[-+±]?\d+\.\d{4}", verdict):
        assert value in appendix, value


def test_numbers_never_print_minus_zero_and_colours_are_fixed_per_model():
    assert number(-0.00001, signed=True) == "±0.0000" and number(-0.00001) == "0.0000"
    assert number(-0.0123, signed=True) == "-0.0123" and number(0.5) == "0.5000"
    from models.registry import REGISTRY

    colours = [colour_of(m) for m in REGISTRY]
    assert len(set(colours)) == len(colours) and colour_of("fusion") == colour_of("fusion")


def test_markdown_html_and_figures_are_written(tmp_path):
    frames = {"results": result_rows(), "differences": differences(), "fits": fits_rows(), "splits": pd.DataFrame()}
    written = write_report_files(frames, tmp_path, {"dataset": "toy", "run_id": "r1"})
    html = (tmp_path / "report.html").read_text()
    markdown = (tmp_path / "report.md").read_text()
    assert "<img" in html and 'src="data:image/png;base64,' in html and 'src="http' not in html
    for link in re.findall(r"\]\((figures/[^)]+\.png)\)", markdown):
        assert (tmp_path / link).read_bytes()[:4] == b"\x89PNG"
    assert "Fusion rating blender" in markdown and "| global | 0.1 | 0.6 | 0.4 |" in markdown
    assert "<th></th>" not in html and "<th>column</th>" not in html  # no stray header cells
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert written["html"].endswith("report.html")


def test_seed_summary_is_mean_and_sample_sd():
    results = pd.concat([result_rows(f"random_s{s}", shift=0.01 * s) for s in range(3)])
    splits = pd.DataFrame({"split_id": [f"random_s{s}" for s in range(3)], "protocol": "random", "seed": [0, 1, 2]})
    summary = seed_summary(results, splits).set_index(["model", "metric"])
    row = summary.loc[("fusion", "mse")]
    assert row["mean"] == 0.71 and abs(row["std"] - 0.01) < 1e-12 and row["seeds"] == 3
    html = to_html(build(results, differences(), fits_rows(), splits, {"dataset": "toy"}))
    assert "Across seeds" in html and "0.7100 ± 0.0100" in html


def test_a_ci_that_misses_its_point_estimate_still_draws():
    """Percentile bootstrap CIs of skewed statistics can lie beside the estimate: the whiskers clip at 0."""
    from reports.render import forest

    skewed = differences()
    skewed.loc[0, "ci_low"] = skewed.loc[0, "diff"] + 0.001
    assert forest(skewed, "mse")[:4] == b"\x89PNG"


def test_the_cost_section_names_the_lms_fine_tuning_recipe():
    fits = fits_rows()
    recipe = "LoRA r=8 on query, value (0.37 M of 23.1 M parameters trained)"
    fits.loc[fits["model"] == "lm_two_tower", "params"] = json.dumps({"metrics_": {"recipe": recipe}})
    markdown, _ = to_markdown(build(result_rows(), differences(), fits, pd.DataFrame(), {"dataset": "toy"}))
    cost = markdown.split("## Cost")[1].split("\n## ")[0]
    lm_row = next(line for line in cost.splitlines() if line.startswith("| lm_two_tower"))
    assert lm_row == f"| lm_two_tower | 300 | 1 | 30 | {recipe} |"
    assert next(line for line in cost.splitlines() if line.startswith("| bias_als")).endswith("|  |")
