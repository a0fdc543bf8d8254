"""Benchmark helpers whose figures end up in the README: checked by hand on tiny inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fit_costs_lines_up_models_and_totals_each_split():
    fit_costs = _script("fit_costs")
    before = {("s1", "ease"): (10.0, 1.5, None), ("s1", "svd"): (2.0, None, None), ("s2", "ease"): (4.0, 1.0, None)}
    after = {("s1", "ease"): (8.0, 1.5, 7.0), ("s2", "ease"): (3.0, 1.0, 3.5), ("s2", "lm"): (5.0, 2.0, 9.0)}
    rows = fit_costs.table({"before": before, "after": after})
    by_key = {(row["split"], row["model"]): row for row in rows}
    assert list(by_key) == [
        ("s1", "ease"),
        ("s1", "svd"),
        ("s2", "ease"),
        ("s2", "lm"),
        ("s1", "(total)"),
        ("s2", "(total)"),
    ]
    assert by_key["s1", "svd"]["after_seconds"] is None  # a model one run did not fit
    assert by_key["s2", "lm"]["before_seconds"] is None
    assert by_key["s1", "(total)"]["before_seconds"] == 12.0 and by_key["s1", "(total)"]["after_seconds"] == 8.0
    assert by_key["s2", "(total)"]["before_seconds"] == 4.0 and by_key["s2", "(total)"]["after_seconds"] == 8.0
    assert (
        by_key["s2", "(total)"]["after_cpu_seconds"] == 12.5 and by_key["s2", "(total)"]["before_cpu_seconds"] is None
    )


def test_fit_costs_refuses_a_folder_without_a_database(tmp_path, capsys):
    fit_costs = _script("fit_costs")
    with pytest.raises(SystemExit, match="reclab.duckdb does not exist"):
        fit_costs.main([str(tmp_path)])


def test_verdict_change_reads_the_primary_rows_and_says_why_a_unit_is_not_judged():
    import pandas as pd

    verdict_change = _script("verdict_change")
    diffs = pd.DataFrame(
        [
            # the primary family: kept; a secondary row: left out
            (
                "random_s0",
                "mse",
                0,
                "all",
                "fusion",
                "svd",
                "vs_best_traditional",
                "primary",
                "biased_mf",
                -0.0070,
                -0.0146,
                0.0012,
                0.4,
                0.0137,
                "no detectable difference",
                None,
            ),
            (
                "random_s0",
                "ndcg",
                10,
                "all",
                "lm_two_tower",
                "ease",
                "vs_best_traditional",
                "primary",
                "ease",
                -0.03,
                -0.04,
                -0.02,
                0.3,
                0.01,
                "not judged",
                "text_twins: random_s0: 84% ... What to do: collapse.",
            ),
            (
                "random_s0",
                "mse",
                0,
                "all",
                "svd",
                "biased_mf",
                "vs_best_traditional",
                "secondary",
                "biased_mf",
                0.001,
                -0.01,
                0.01,
                1.0,
                0.02,
                "no detectable difference",
                None,
            ),
        ],
        columns=[
            "split_id",
            "metric",
            "k",
            "segment",
            "model",
            "reference",
            "kind",
            "family",
            "test_best",
            "diff",
            "ci_low",
            "ci_high",
            "t_p_adj",
            "mdd",
            "verdict",
            "note",
        ],
    )
    rows = verdict_change.after_rows(diffs)
    assert set(rows) == {("random_s0", "rating", "fusion"), ("random_s0", "ranking", "lm_two_tower")}
    rating = rows[("random_s0", "rating", "fusion")]
    assert rating["reference"] == "svd" and rating["test_best"] == "biased_mf"
    assert verdict_change._cell(rating, True) == (
        "svd -0.0070 [-0.0146, +0.0012] p=0.4 det 0.0137: no detectable difference"
    )
    withheld = verdict_change._cell(rows[("random_s0", "ranking", "lm_two_tower")], True)
    assert withheld == "ease -0.0300: not judged (text_twins)"
    assert verdict_change._cell(None, False) == "—"


def test_synth_enlarges_a_movielens_folder_keeping_each_users_and_items_counts(tmp_path):
    import pandas as pd

    synth = _script("synth")
    source = tmp_path / "ml"
    source.mkdir()
    ratings = pd.DataFrame(
        {"userId": [1, 1, 2], "movieId": [10, 20, 10], "rating": [4.0, 3.5, 5.0], "timestamp": [100, 200, 300]}
    )
    ratings.to_csv(source / "ratings.csv", index=False)
    pd.DataFrame({"movieId": [10, 20], "title": ["A (1999)", "B (2001)"], "genres": ["Drama", "Comedy"]}).to_csv(
        source / "movies.csv", index=False
    )
    counts = synth.enlarge_movielens(source, tmp_path / "x3", 3)
    assert counts == {"interactions": 9, "users": 6, "items": 6}
    out = pd.read_csv(tmp_path / "x3" / "ratings.csv")
    assert sorted(out["userId"].unique()) == [3, 4, 5, 6, 7, 8]  # u * 3 + k
    assert out.groupby("userId").size().to_dict() == {3: 2, 4: 2, 5: 2, 6: 1, 7: 1, 8: 1}  # each copy as many
    assert sorted(out["rating"]) == sorted(list(ratings["rating"]) * 3)
    assert not out.duplicated(["userId", "movieId"]).any()
    assert out.groupby("movieId").size().sum() == 9 and set(out["movieId"]) <= {30, 31, 32, 60, 61, 62}
    assert (out["timestamp"] - 200).abs().max() <= 100 + 86_400  # a jitter of at most a day
    movies = pd.read_csv(tmp_path / "x3" / "movies.csv")
    assert list(movies["movieId"]) == [30, 31, 32, 60, 61, 62] and list(movies["title"][:3]) == ["A (1999)"] * 3


def test_stage_costs_table_gives_each_sizes_time_over_the_previous():
    costs = _script("stage_costs")
    stored = {
        "1": {"ingest": {"seconds": 2.0, "peak_rss_mib": 300}},
        "4": {"ingest": {"seconds": 8.0, "peak_rss_mib": 400}},
    }
    lines = costs.table(stored, [1, 4], ["ingest", "statistics"]).splitlines()
    assert lines[1].split() == ["ingest", "2.0", "300", "8.0", "400", "4.00"]  # linear: 4x the data, 4x the time
    assert lines[2].split() == ["statistics", "-", "-", "-", "-", "-"]


def test_paired_reads_one_runs_values_and_can_take_the_references_from_another(tmp_path, capsys):
    import json

    import duckdb
    import pandas as pd

    paired = _script("paired")
    users = [f"u{n}" for n in range(30)]
    rows = []
    for run, shift in (("run-old", 0.5), ("run-new", 0.0)):  # the old run's values would move every mean
        for model, base in (("a", 0.4), ("b", 0.3)):
            for n, user in enumerate(users):
                rows.append((run, "temporal_s0", model, "ndcg", 10, user, "all", "all", base + shift + n / 1000, 1.0))
    frame = pd.DataFrame(
        rows,
        columns=["run_id", "split_id", "model", "metric", "k", "user_id", "user_segment", "item_segment", "num", "den"],
    )
    with duckdb.connect(str(tmp_path / "reclab.duckdb")) as con:
        con.register("frame_view", frame)
        con.execute("CREATE TABLE eval_per_user AS SELECT * FROM frame_view")
        con.execute("CREATE TABLE eval_results AS SELECT DISTINCT run_id FROM frame_view")
        con.execute(
            "CREATE TABLE runs AS SELECT * FROM (VALUES ('run-old', TIMESTAMP '2026-01-01'), "
            "('run-new', TIMESTAMP '2026-02-01')) t(run_id, started_at)"
        )
    out = tmp_path / "p.json"
    paired.main(["--workspace", str(tmp_path), "--unit", "temporal_s0", "--pair", "a", "b", "--json", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["n_users"] == 30 and abs(row["value"] - 0.4145) < 1e-9 and abs(row["diff"] - 0.1) < 1e-9  # run-new only
    paired.main(
        ["--workspace", str(tmp_path), "--unit", "temporal_s0", "--pair", "a", "a", "--run", "run-new"]
        + ["--reference-run", "run-old", "--json", str(out)]
    )
    row = json.loads(out.read_text())["rows"][0]
    assert row["reference"] == "a@run-old" and abs(row["diff"] + 0.5) < 1e-9  # the same model, the other run
    assert "run run-new" in capsys.readouterr().out
