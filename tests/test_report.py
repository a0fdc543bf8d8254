"""The report: conclusions generated from the numbers, Markdown + self-contained HTML, atomic files."""

from __future__ import annotations

import json
import re

import pandas as pd

from models.evaluation.harness import TEST_COLUMNS
from reports.conclusions import seed_summary, segment_conclusions, split_conclusions
from reports.render import build, to_html, to_markdown
from tasks.report import write_report_files

MODELS = {"bias_als": 0.75, "lightfm_hybrid": 0.80, "lm_two_tower": 0.78, "fusion": 0.70}


def result_rows(split_id="random_s0", shift=0.0):
    rows = []
    for model, mse in MODELS.items():
        mse += shift
        rows.append((split_id, model, "mse", 0, "all", mse, mse - 0.05, mse + 0.05, 100))
        rows.append((split_id, model, "rmse", 0, "all", mse**0.5, (mse - 0.05) ** 0.5, (mse + 0.05) ** 0.5, 100))
        # sparse users: the LM side is better than bias there
        sparse = mse + (0.1 if model == "bias_als" else 0.02)
        rows.append((split_id, model, "mse", 0, "users:≤3", sparse, sparse - 0.2, sparse + 0.2, 20))
        ndcg = {"bias_als": 0.02, "lightfm_hybrid": 0.06, "lm_two_tower": 0.03, "fusion": 0.05}[model]
        rows.append((split_id, model, "ndcg", 10, "all", ndcg, ndcg - 0.01, ndcg + 0.01, 100))
    return pd.DataFrame(
        rows, columns=["split_id", "model", "metric", "k", "segment", "value", "ci_low", "ci_high", "n_users"]
    )


def paired_rows(split_id="random_s0"):
    return pd.DataFrame(
        [
            (split_id, "mse", 0, "bias_als", "fusion", 0.05, 100, 0.001, 0.002, 0.004, 0.006),
            (split_id, "ndcg", 10, "fusion", "lightfm_hybrid", -0.01, 100, 0.2, 0.3, 0.6, 0.7),
        ],
        columns=["split_id", *TEST_COLUMNS],
    )


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


def test_conclusions_name_the_winner_the_gain_and_the_corrected_test():
    lines = split_conclusions(result_rows(), paired_rows(), "random_s0")
    mse = next(line for line in lines if line.startswith("MSE"))
    # fusion 0.70 vs the best traditional model bias_als 0.75: 6.7% lower, Holm p = 0.004
    assert "fusion is best with 0.7000 [0.6500, 0.7500]" in mse and "6.7% lower" in mse and "bias_als" in mse
    assert "p = 0.004 after Holm correction (significant" in mse
    ndcg = next(line for line in lines if line.startswith("NDCG@10"))
    assert "lightfm_hybrid is best" in ndcg and "a traditional model wins" in ndcg and "not significant" in ndcg
    sparse = [line for line in segment_conclusions(result_rows(), "random_s0") if line.startswith("users:≤3")]
    # sparse users: best traditional lightfm_hybrid 0.82 (bias 0.85); lm 0.80 is 2.4% lower
    assert any("lm_two_tower helps" in line and "2.4% lower" in line and "vs lightfm_hybrid" in line for line in sparse)


def test_every_number_in_the_conclusions_appears_in_the_report_tables():
    blocks = build(result_rows(), paired_rows(), fits_rows(), pd.DataFrame(), {"dataset": "toy", "run_id": "r1"})
    markdown, _ = to_markdown(blocks)
    conclusions = markdown.split("## Conclusions")[1].split("## Split")[0]
    tables = markdown.split("## Split")[1]
    for number in re.findall(r"\d+\.\d{4}", conclusions):
        assert number in tables, number


def test_markdown_html_and_figures_are_written(tmp_path):
    frames = {"results": result_rows(), "tests": paired_rows(), "fits": fits_rows(), "splits": pd.DataFrame()}
    written = write_report_files(frames, tmp_path, {"dataset": "toy", "run_id": "r1"})
    html = (tmp_path / "report.html").read_text()
    markdown = (tmp_path / "report.md").read_text()
    assert "<img" in html and 'src="data:image/png;base64,' in html and 'src="http' not in html
    for link in re.findall(r"\]\((figures/[^)]+\.png)\)", markdown):
        assert (tmp_path / link).read_bytes()[:4] == b"\x89PNG"
    assert "Fusion weights" in markdown and "| global | 0.1 | 0.6 | 0.4 |" in markdown
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert written["html"].endswith("report.html")


def test_seed_summary_is_mean_and_sample_sd():
    results = pd.concat([result_rows(f"random_s{s}", shift=0.01 * s) for s in range(3)])
    splits = pd.DataFrame({"split_id": [f"random_s{s}" for s in range(3)], "protocol": "random", "seed": [0, 1, 2]})
    summary = seed_summary(results, splits).set_index(["model", "metric"])
    row = summary.loc[("fusion", "mse")]
    assert row["mean"] == 0.71 and abs(row["std"] - 0.01) < 1e-12 and row["seeds"] == 3
    html = to_html(build(results, paired_rows(), fits_rows(), splits, {"dataset": "toy"}))
    assert "Across seeds" in html and "0.7100 ± 0.0100" in html
