"""The report: the verdict from the primary family in plain sentences (relative change, CI, what the test
could detect), "not judged" where the data card condemns a unit, exploration kept apart, Markdown +
self-contained HTML, atomic files."""

from __future__ import annotations

import json
import re

import pandas as pd

from models.evaluation.comparisons import DIFFERENCE_COLUMNS
from reports.conclusions import bottom_line, number, seed_summary, task_sentences, verdict_rows
from reports.render import build, colour_of, to_html, to_markdown
from tasks.report import write_report_files

MODELS = {"bias_als": 0.75, "lightfm_hybrid": 0.80, "lm_two_tower": 0.78, "fusion": 0.70, "popularity": 0.9}
NDCG = {"bias_als": 0.02, "lightfm_hybrid": 0.06, "lm_two_tower": 0.03, "fusion": 0.05, "popularity": 0.04}


def result_rows(split_id="random_s0", shift=0.0):
    rows = []
    for model, mse in MODELS.items():
        mse += shift
        rows.append((split_id, model, "mse", 0, "all", mse, mse - 0.05, mse + 0.05, 100))
        rows.append((split_id, model, "rmse", 0, "all", mse**0.5, (mse - 0.05) ** 0.5, (mse + 0.05) ** 0.5, 100))
        sparse = mse + (0.1 if model == "bias_als" else 0.02)
        rows.append((split_id, model, "mse", 0, "users:≤3", sparse, sparse - 0.2, sparse + 0.2, 20))
        ndcg = NDCG[model]
        rows.append((split_id, model, "ndcg", 10, "all", ndcg, ndcg - 0.01, ndcg + 0.01, 100))
    return pd.DataFrame(
        rows, columns=["split_id", "model", "metric", "k", "segment", "value", "ci_low", "ci_high", "n_users"]
    )


def diff(split_id, metric, model, reference, kind="vs_best_traditional", segment="all", **fields):
    values = NDCG if metric == "ndcg" else MODELS
    value = fields.pop("value", values.get(model, 0.5))
    ref = fields.pop("reference_value", values.get(reference, 0.5))
    primary = kind == "vs_best_traditional" and segment == "all" and model in ("fusion", "lm_two_tower")
    row = {
        "split_id": split_id,
        "metric": metric,
        "k": 10 if metric == "ndcg" else 0,
        "segment": segment,
        "model": model,
        "reference": reference,
        "kind": kind,
        "family": "primary" if primary else "secondary",
        "reference_rule": "validation",
        "reference_validation": ref + 0.01,
        "test_best": reference,
        "n_users": 100,
        "value": value,
        "reference_value": ref,
        "diff": value - ref,
        "se": 0.005,
        "ci_low": value - ref - 0.01,
        "ci_high": value - ref + 0.01,
        "mean_user_diff": value - ref,
        "median_user_diff": value - ref,
        "share_better": 0.6,
        "share_worse": 0.3,
        "t_p": 0.001,
        "wilcoxon_p": 0.002,
        "t_p_adj": 0.003,
        "wilcoxon_p_adj": 0.004,
        "correction": "holm" if primary else "bh",
        "family_size": 4 if primary else 3,
        "mdd": 0.0175,
        "verdict": "better",
        "tests_disagree": False,
        "note": None,
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
            t_p_adj=0.4,
            wilcoxon_p_adj=0.5,
            verdict="no detectable difference",
        ),
        diff(split_id, "mse", "fusion", "lm_two_tower", kind="vs_component"),
        # sparse users: the LM better, on 40 users (exploratory); a 5-user segment is too small
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
            t_p_adj=float("nan"),
            wilcoxon_p_adj=float("nan"),
            mdd=float("nan"),
            verdict="too few users",
        ),
        # ranking: fusion vs lightfm: mean level, but most users worse (the tests disagree)
        diff(
            split_id,
            "ndcg",
            "fusion",
            "lightfm_hybrid",
            verdict="no detectable difference",
            t_p_adj=0.2,
            wilcoxon_p_adj=0.001,
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
            (split_id, m, json.dumps(params if m == "fusion" else {}), s, 1.0, json.dumps(extras))
            for m, s, extras in (
                ("bias_als", 2.0, {"cpu_seconds": 1.5, "overlapped_with": ["lm_two_tower"]}),
                ("lightfm_hybrid", 8.0, {}),
                ("lm_two_tower", 300.0, {"cpu_seconds": 410.0, "overlapped_with": ["bias_als", "popularity"]}),
                ("fusion", 3.0, {}),
                ("popularity", 0.1, {"constant_share": 1.0}),
            )
        ],
        columns=["split_id", "model", "params", "fit_seconds", "eval_seconds", "extras"],
    )


def report(diffs=None, fits=None, results=None, splits=None, card=None) -> str:
    blocks = build(
        result_rows() if results is None else results,
        differences() if diffs is None else diffs,
        fits_rows() if fits is None else fits,
        pd.DataFrame() if splits is None else splits,
        {"dataset": "toy"},
        card,
    )
    return to_markdown(blocks)[0]


def test_the_verdict_says_each_primary_comparison_in_words_with_what_the_test_could_detect():
    sentences = task_sentences(differences())
    rating_fusion = next(s for s in sentences if s.startswith("The fusion, rating"))
    # the fusion: 0.70 vs 0.75, -6.7% [-9.3%, -4.0%]; detectable 0.0175 / 0.75 = 2.3%
    assert rating_fusion == (
        "The fusion, rating (MSE): random_s0: MSE -6.7% [-9.3%, -4.0%] against bias_als (0.7000 vs 0.7500); "
        "this test detects 2.3% or more: better (Holm p = 0.003)."
    )
    rating_lm = next(s for s in sentences if s.startswith("The fine-tuned LM, rating"))
    assert "this test detects 2.3% or more: no detectable difference (Holm p = 0.4)" in rating_lm
    ranking_fusion = next(s for s in sentences if s.startswith("The fusion, ranking"))
    # a difference that rounds to zero is never "-0"; the typical user is named where the tests disagree
    assert "NDCG@10 ±0.0% [" in ranking_fusion
    assert "most users (60%) are served worse (Wilcoxon p = 0.001)" in ranking_fusion
    line = bottom_line(differences())
    assert line.startswith("Bottom line (4 pre-registered comparisons, Holm-corrected): the fusion is better than")
    assert (
        "the fusion is better than the reference in 1 of 2 judged comparisons (random_s0 MSE -6.7%), worse in 0" in line
    )
    assert "the fine-tuned LM is better than the reference in 0 of 2 judged comparisons, worse in 1" in line


def test_the_verdict_table_names_the_validation_reference_and_the_test_best_beside_it():
    table = verdict_rows(differences(), pd.DataFrame()).set_index(["task", "contender"])
    row = table.loc[("rating (MSE)", "fusion")]
    assert row["reference (validation-best)"] == "bias_als 0.7500" and row["best on test"] == "bias_als"
    assert row["difference [95% CI]"] == "-0.0500 [-0.0700, -0.0300]" and row["Holm p"] == "0.003"
    assert row["detectable"] == "0.0175 (2.3%)" and row["verdict"] == "better"
    assert table.loc[("ranking (NDCG@10)", "fusion"), "verdict"] == "no detectable difference (tests disagree)"
    assert len(table) == 4  # the primary family only: no component, no other model, no segment


def test_a_unit_the_data_card_condemns_is_not_judged_and_never_counts():
    # the LM "wins" by a mile on a leaking split: planted text twins
    leak = [
        diff(
            "random_s0", "mse", "lm_two_tower", "bias_als", verdict="not judged", value=0.2, ci_low=-0.6, ci_high=-0.5
        ),
        diff("random_s0", "mse", "fusion", "bias_als", verdict="not judged"),
    ]
    note = "text_twins: random_s0: 84% of 500 held-out pairs ... What to do: re-run prepare with --text-duplicates collapse."
    frame = pd.DataFrame(leak, columns=["split_id", *DIFFERENCE_COLUMNS]).assign(note=note, t_p_adj=float("nan"))
    frame = pd.concat([frame, differences("temporal_s0")], ignore_index=True)
    line = bottom_line(frame)
    assert "random_s0 MSE" not in line.split(" are not judged")[0]
    assert "2 comparisons on random_s0 are not judged: the data card condemns them (see Not judged)." in line
    assert "the fine-tuned LM is better than the reference in 0 of 2 judged comparisons" in line
    assert not any("random_s0: MSE" in s for s in task_sentences(frame))
    assert any(s.endswith("; not judged on random_s0 (data card).") for s in task_sentences(frame))
    markdown = report(frame)
    withheld = markdown.split("### Not judged")[1].split("![")[0]
    assert "| random_s0 | ? | rating (MSE) | " in withheld and "fusion − bias_als MSE " in withheld
    assert "--text-duplicates collapse" in withheld
    assert "random_s0" not in markdown.split("## Verdict")[1].split("### Not judged")[0].split("\n| unit")[1]


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
    markdown = report(fits=fits)
    assert "The fusion reduced to one component: rating: lm_two_tower alone, ranking: lightfm_hybrid alone." in markdown


def test_for_whom_lists_significant_segments_as_exploration_and_names_the_small_ones():
    whom = report().split("## For whom (exploratory)")[1].split("## Cost")[0]
    assert "Benjamini–Hochberg" in whom
    assert (
        "| random_s0 | users:≤3 | MSE | lm_two_tower | bias_als | 40 | -0.0500 [-0.0600, -0.0400] | 0.003 | better |"
        in whom
    )
    assert "users:>25" not in whom.split("Too few users")[0]
    assert "Too few users to test: random_s0 users:>25 (n=5)." in whom


def test_data_card_warnings_open_the_report():
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
    # right under the "In short" lines and figure, before the detail
    assert [b[0] for b in blocks[:5]] == ["h1", "h2", "ul", "figure", "warn"]
    assert blocks[4] == ("warn", ["Data card: random_s0: 90% of held-out pairs..."])
    markdown, _ = to_markdown(blocks)
    assert markdown.index("> **Warning.** Data card") < markdown.index("## Verdict") < markdown.index("## Data card")


def test_every_number_in_the_verdict_table_appears_in_the_appendix():
    markdown = report()
    verdict = markdown.split("## Verdict")[1].split("## For whom")[0]
    table = verdict[verdict.index("| unit") :]
    appendix = markdown.split("## Appendix")[1]
    for value in re.findall(r"[-+±]?\d+\.\d{4}", table):
        assert value in appendix, value


def test_the_report_ends_with_a_glossary_and_repeats_no_verdict_sentence_per_row():
    markdown = report()
    glossary = markdown.split("## Glossary")[1]
    for term in ("MSE", "NDCG@10", "Holm", "Wilcoxon", "Detectable", "random_s0", "kfold_s0", "Cost"):
        assert term in glossary, term
    verdict = markdown.split("## Verdict")[1].split("## For whom")[0]
    appendix = markdown.split("## Appendix")[1].split("## Glossary")[0]
    assert verdict.count("no detectable difference") == 4  # two sentences, two table cells: one per comparison
    assert appendix.count("no detectable difference") == 1  # the legend of "n.s.", never a sentence per row
    assert "| n.s. |" in appendix


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


def test_a_model_that_ranks_nothing_is_not_drawn_in_ranking_plots(monkeypatch):
    import reports.render as render

    drawn = []
    monkeypatch.setattr(render, "draw_png", lambda draw, height=3.6: drawn.append(draw) or b"\x89PNG")

    class Axes:
        def __init__(self):
            self.labels = []

        def set_yticks(self, ticks, labels=None, **_):
            self.labels += [] if labels is None else list(labels)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    render.points_with_ci(result_rows(), "random_s0", "ndcg", 10, silent=["popularity"])
    render.points_with_ci(result_rows(), "random_s0", "mse", 0, silent=["popularity"])
    ndcg_axes, mse_axes = Axes(), Axes()
    drawn[0](ndcg_axes)
    drawn[1](mse_axes)
    assert "popularity" not in list(ndcg_axes.labels) and "popularity" in list(mse_axes.labels)


def test_the_forest_marks_significant_primary_differences(monkeypatch):
    import reports.render as render

    drawn = []
    monkeypatch.setattr(render, "draw_png", lambda draw, height=3.6: drawn.append(draw) or b"\x89PNG")
    labels, faces = [], []

    class Axes:
        def set_yticks(self, ticks, names=None, **_):
            labels.extend(names)

        def errorbar(self, *args, markerfacecolor=None, **kwargs):
            faces.append(markerfacecolor)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    render.forest(differences(), "mse")
    drawn[0](Axes())
    assert labels == ["* random_s0: fusion vs bias_als", "random_s0: lm_two_tower vs bias_als"]
    assert faces[0] == colour_of("fusion") and faces[1] == "white"  # filled: significant; hollow: not


def test_seed_summary_is_mean_and_sample_sd_and_a_kfold_unit_is_one_seed():
    results = pd.concat([result_rows(f"random_s{s}", shift=0.01 * s) for s in range(3)])
    folds = pd.concat([result_rows(f"kfold_s0_f{f}", shift=0.5) for f in (1, 2)] + [result_rows("kfold_s0")])
    splits = pd.DataFrame(
        {
            "split_id": [f"random_s{s}" for s in range(3)] + ["kfold_s0_f1", "kfold_s0_f2"],
            "protocol": ["random"] * 3 + ["kfold"] * 2,
            "seed": [0, 1, 2, 0, 0],
        }
    )
    summary = seed_summary(pd.concat([results, folds]), splits).set_index(["protocol", "model", "metric"])
    row = summary.loc[("random", "fusion", "mse")]
    assert row["mean"] == 0.71 and abs(row["std"] - 0.01) < 1e-12 and row["seeds"] == 3
    assert summary.loc[("kfold", "fusion", "mse"), "seeds"] == 1  # its folds are not seeds; its pooled value
    assert summary.loc[("kfold", "fusion", "mse"), "mean"] == 0.70
    html = to_html(build(results, differences(), fits_rows(), splits.iloc[:3], {"dataset": "toy"}))
    assert "Across seeds" in html and "0.7100 ± 0.0100" in html


def test_a_kfold_unit_is_reported_once_from_its_pooled_rows():
    results = pd.concat(
        [result_rows("kfold_s0_f1", shift=0.5), result_rows("kfold_s0_f2", shift=0.5), result_rows("kfold_s0")]
    )
    fits = pd.concat([fits_rows("kfold_s0_f1"), fits_rows("kfold_s0_f2")], ignore_index=True)
    splits = pd.DataFrame({"split_id": ["kfold_s0_f1", "kfold_s0_f2"], "protocol": "kfold", "seed": 0})
    markdown = report(differences("kfold_s0"), fits, results, splits)
    assert "### kfold_s0 (kfold, 2 folds pooled: each rating tested once)" in markdown
    assert "### kfold_s0_f1" not in markdown
    assert "Fusion rating blender (learned on validation), global weights, per fold:" in markdown
    assert "| kfold_s0 | kfold | rating (MSE) |" in markdown
    partial = splits.assign(parameters=json.dumps({"folds": 5}))  # 2 of the protocol's 5 folds were trained
    markdown = report(differences("kfold_s0"), fits, results, partial)
    assert "### kfold_s0 (kfold, 2 of 5 folds pooled: not every rating is tested)" in markdown


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
    cost = report(fits=fits).split("## Cost")[1].split("\n## ")[0]
    lm_row = next(line for line in cost.splitlines() if line.startswith("| lm_two_tower"))
    overlap = (
        "trained in its own process beside the 2 other fits on 1 of 1 splits, one core each until they "
        "finished (its wall seconds include that)"
    )
    assert lm_row == f"| lm_two_tower | 300 | 410 | 1 | 29.7 | {recipe}; {overlap} |"  # 300 s over 2 + 8 + 0.1 s
    assert (
        next(line for line in cost.splitlines() if line.startswith("| bias_als"))
        == "| bias_als | 2 | 1.5 | 1 | 0.2 |  |"
    )


def test_the_cost_section_names_a_budgeted_model_and_how_many_pairs_it_trained_on():
    fits = fits_rows()
    budget = {"trained": 100_000, "of": 1_270_000, "unit": "training pairs per epoch", "setting": "max_train_pairs"}
    metrics = {"recipe": "top layer", "budget": budget}
    fits.loc[fits["model"] == "lm_two_tower", "params"] = json.dumps({"metrics_": metrics})
    cost = report(fits=fits).split("## Cost")[1].split("\n## ")[0]
    lm_row = next(line for line in cost.splitlines() if line.startswith("| lm_two_tower"))
    assert "budgeted: trained on 100,000 of 1,270,000 training pairs per epoch on 1 of 1 splits" in lm_row
    unbudgeted = {"recipe": "top layer"}
    fits.loc[fits["model"] == "lm_two_tower", "params"] = json.dumps({"metrics_": unbudgeted})
    assert "budgeted" not in report(fits=fits).split("## Cost")[1].split("\n## ")[0]


def test_the_cost_section_names_a_skipped_model_and_why():
    fits = fits_rows()
    reason = "ease skipped: 155,872 items, and its dense items x items matrices would take about 634 GiB"
    skipped = pd.DataFrame(
        [("random_s0", "ease", "{}", 0.0, 0.0, json.dumps({"skipped": reason}))], columns=fits.columns
    )
    cost = report(fits=pd.concat([fits, skipped], ignore_index=True)).split("## Cost")[1].split("\n## ")[0]
    row = next(line for line in cost.splitlines() if line.startswith("| ease"))
    assert f"{reason}, on 1 of 1 splits" in row


def test_a_run_without_families_asks_to_be_judged_again():
    old = differences().drop(columns=["family"])
    assert "re-run `python -m flows.train`" in report(old)


def test_a_contender_identical_to_its_reference_is_said_so_not_given_a_detectable_size():
    from reports.conclusions import sentence

    row = pd.Series(
        diff(
            "cold_items_s0",
            "ndcg",
            "fusion",
            "lightfm_hybrid",
            value=0.0384,
            reference_value=0.0384,
            se=0.0,
            ci_low=0.0,
            ci_high=0.0,
            mdd=0.0,
            verdict="no detectable difference",
            t_p_adj=1.0,
        )
    )
    assert row["diff"] == 0
    assert sentence(row) == "cold_items_s0: NDCG@10 identical to lightfm_hybrid for every user (no difference to test)"
    frame = pd.DataFrame([row.to_dict()])
    assert "no difference was detected in 1 (identical to the reference)" in bottom_line(frame)


def test_the_cost_section_says_which_fits_were_restored_from_the_fit_store():
    fits = fits_rows()
    fits.loc[fits["model"] == "bias_als", "extras"] = json.dumps({"reused": True})
    cost = report(fits=fits).split("## Cost")[1].split("\n## ")[0]
    row = next(line for line in cost.splitlines() if line.startswith("| bias_als"))
    assert row.endswith("| restored from the fit store on 1 of 1 splits (seconds: its first fit's) |")


def test_what_fine_tuning_adds_is_said_under_the_bottom_line():
    rows = differences()
    ablation = diff(
        "random_s0",
        "mse",
        "lm_two_tower",
        "text_frozen",
        kind="vs_ablation",
        family="primary",
        value=0.70,
        reference_value=0.80,
        ci_low=-0.14,
        ci_high=-0.06,
    )
    text = report(pd.concat([rows, pd.DataFrame([ablation])], ignore_index=True))
    line = next(line for line in text.splitlines() if "What fine-tuning adds" in line)
    # -0.10 of 0.80 = -12.5% [-17.5%, -7.5%]; detectable 0.0175 / 0.80 = 2.2%
    assert "lm_two_tower against text_frozen" in line and "-12.5% [-17.5%, -7.5%]" in line.replace("−", "-")
    assert "detects 2.2%" in line and line.endswith("better (Holm p = 0.003).")
    assert text.index("Bottom line") < text.index("What fine-tuning adds") < text.index("## For whom")
    # the LM's comparison with the reference is still its own sentence, not mixed with the ablation
    lm = next(line for line in task_sentences(pd.concat([rows, pd.DataFrame([ablation])])) if "fine-tuned LM" in line)
    assert "text_frozen" not in lm


def test_the_sparsity_axis_is_a_table_a_curve_and_sentences_per_unit_and_question(monkeypatch):
    from reports import render

    drawn = []
    monkeypatch.setattr(render, "draw_png", lambda draw, height=3.6: drawn.append(draw) or b"png")
    rows = [differences(s) for s in ("random_s0", "random_s0_t25", "random_s0_t10")]
    frozen = [diff(s, "mse", "text_frozen", "bias_als") for s in ("random_s0", "random_s0_t10")]  # secondary
    rows.append(pd.DataFrame(frozen))
    text = report(pd.concat(rows, ignore_index=True))
    assert "## Less training data: does the LM need less?" in text
    line = next(line for line in text.splitlines() if line.startswith("- random_s0, MSE, lm_two_tower vs reference"))
    assert line.index("10%:") < line.index("25%:") < line.index("100%:")  # the smallest share first
    table = [line for line in text.splitlines() if line.startswith("| random_s0 | rating (MSE) | fusion vs reference")]
    assert [cell.split("|")[4].strip() for cell in table] == ["10%", "25%", "100%"]
    assert "sparsity_mse" in text and "sparsity_ndcg" in text
    frozen_rows = [line for line in text.splitlines() if "| text_frozen vs reference |" in line]
    assert len(frozen_rows) == 2 and all("better (exploratory, BH)" in line for line in frozen_rows)
    assert "Less training data" not in report()  # a run without reduced splits has no such section


def test_the_console_says_when_a_kfold_unit_is_judged_from_fewer_folds_than_k(capsys):
    from flows.results import SplitEvaluation, Trained
    from reports.console import print_evaluation

    def trained(ids, planned):
        empty = pd.DataFrame(columns=["model", "metric", "k", "segment", "value", "ci_low", "ci_high"])
        splits = {s: SplitEvaluation("kfold", empty, []) for s in ids}
        return Trained("r", "ws.duckdb", splits, pd.DataFrame(), 0, planned_folds={"kfold_s0": planned})

    print_evaluation(trained(["kfold_s0_f1"], 5))
    out = capsys.readouterr().out
    assert "kfold_s0: 1 folds (kfold_s0_f1), judged pooled: only 1 of its 5 folds trained" in out
    assert "every rating tested once" not in out
    print_evaluation(trained([f"kfold_s0_f{n}" for n in range(1, 6)], 5))
    assert "judged pooled: every rating tested once" in capsys.readouterr().out


def test_the_report_opens_in_short_with_a_line_per_contender_and_one_figure_its_numbers_the_primary_rows():
    """The first block of every report is "In short": one plain line per contender, each number read from the
    primary rows (a significant change relative to the reference's value; for no detectable difference, the
    detectable size relative to it), then the figure of every primary comparison; the appendix and glossary
    open collapsed in the HTML."""
    diffs = differences()
    blocks = build(result_rows(), diffs, fits_rows(), pd.DataFrame(), {"dataset": "toy"})
    assert blocks[1] == ("h2", "In short") and blocks[2][0] == "ul" and blocks[3][:2] == ("figure", "in_short")
    fusion, lm = blocks[2][1]
    rows = diffs[(diffs["family"] == "primary") & (diffs["segment"] == "all")].set_index(["model", "metric"])
    mse = rows.loc[("fusion", "mse")]
    change = 100 * mse["diff"] / mse["reference_value"]  # (0.90 - 0.95) / 0.95: -5.3%
    assert fusion.startswith(
        f"The fusion rates {abs(change):.1f}% better than bias_als (MSE {change:+.1f}%; significant)"
    )
    ndcg = rows.loc[("fusion", "ndcg")]
    seen = 100 * ndcg["mdd"] / ndcg["reference_value"]
    assert f"ranks as well as lightfm_hybrid (no difference as large as {seen:.1f}%" in fusion
    lm_mse = rows.loc[("lm_two_tower", "mse")]
    assert (
        f"rates as well as bias_als (no difference as large as {100 * lm_mse['mdd'] / lm_mse['reference_value']:.1f}%"
        in lm
    )
    lm_ndcg = rows.loc[("lm_two_tower", "ndcg")]
    worse = 100 * lm_ndcg["diff"] / lm_ndcg["reference_value"]
    assert f"ranks {abs(worse):.1f}% worse than lightfm_hybrid (NDCG@10 {worse:+.1f}%; significant)" in lm
    page = to_html(blocks)
    body = page[page.index("<body>") :]
    first = re.findall(r"<(h1|h2|ul|figure|p)\b", body)[:4]
    assert first == ["h1", "h2", "ul", "figure"] and '<h2 id="in-short">In short</h2>' in body.split("<ul>")[0]
    assert body.count("<li>", body.index("In short"), body.index("<figure>")) == 2
    assert '<details><summary><h2 id="appendix">Appendix</h2></summary>' in body and body.count(
        "<details>"
    ) == body.count("</details>")
    markdown = to_markdown(blocks)[0]
    assert markdown.split("\n\n")[1:3] == ["## In short", "\n".join(f"- {line}" for line in (fusion, lm))]
    # a comparison the data card withheld is counted in one line
    withheld = diffs.assign(verdict=lambda f: f["verdict"].where(f["model"] != "lm_two_tower", "not judged"))
    from reports.conclusions import in_short

    lines = in_short(withheld)
    assert lines[1] == "The fine-tuned LM is not judged on any unit."
    assert lines[-1] == (  # its MSE and NDCG rows, and a link to why
        "Not judged: 2 comparisons on random_s0, withheld by the data card (see [Not judged](#not-judged))."
    )
    html_line = to_html([("h1", "r"), ("ul", lines[-1:]), ("h3", "Not judged")])
    assert '(see <a href="#not-judged">Not judged</a>)' in html_line and '<h3 id="not-judged">' in html_line
