"""The prepare flow end to end under one Prefect test backend, and the command line's behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
from conftest import review, write_lines
from test_lm import TINY_BERT

from data_checks import ValidationFailed

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_prepare_default_dataset(prefect_harness, tmp_path):
    from flows.prepare import PrepareParams, prepare

    summary = prepare(PrepareParams(workspace=str(tmp_path / "ws")))
    t = summary["tables"]
    assert (t["interactions"], t["users_with_ratings"], t["items_with_ratings"]) == (10_261, 1_429, 900)
    assert summary["accounting"]["interactions"] == {
        "raw": 10_261,
        "kept": 10_261,
        "quarantined": 0,
        "exact_duplicates": 0,
        "superseded": 0,
    }
    assert summary["splits"]["random_s0"] == {"train": 8208, "validation": 1026, "test": 1027}
    assert summary["splits"]["temporal_s0"] == {"train": 10_261 - 2 * 1_429, "validation": 1_429, "test": 1_429}
    with duckdb.connect(summary["database"], read_only=True) as con:
        status, fingerprint, params = con.execute(
            "SELECT status, input_fingerprint, parameters FROM runs WHERE run_id = ?", [summary["run_id"]]
        ).fetchone()
    assert status == "completed" and len(fingerprint) == 64 and json.loads(params)["split"]["seed"] == 0
    assert (tmp_path / "ws" / "runs" / summary["run_id"] / "data_docs" / "index.html").exists()


def test_full_flow_prepares_then_trains_and_evaluates(prefect_harness, tmp_path):
    from flows.baselines import BaselinesParams
    from flows.full import FullParams, full
    from flows.prepare import PrepareParams
    from models.evaluation import EvalConfig
    from tasks.train import TrainConfig

    records = [review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i) for i in range(64)]
    path = write_lines(tmp_path / "r.json", records)
    models = ("global_mean", "bias_als", "popularity", "lightfm_hybrid", "lm_two_tower", "fusion")
    tiny_lm = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
    params = FullParams(
        prepare=PrepareParams(
            data=str(path), workspace=str(tmp_path / "ws"), split={"protocols": ("random", "temporal")}
        ),
        baselines=BaselinesParams(
            train=TrainConfig(models=models, lightfm_max_epochs=5, lightfm_trials=0, lm_overrides=tiny_lm),
            evaluation=EvalConfig(n_boot=100),
        ),
    )
    out = full(params)
    assert out["prepare"]["tables"]["interactions"] == 64
    assert set(out["baselines"]["splits"]) == {"random_s0", "temporal_s0"}
    with duckdb.connect(out["prepare"]["database"], read_only=True) as con:
        rows = con.execute(
            "SELECT split_id, model, value, ci_low, ci_high FROM eval_results WHERE segment = 'all' AND metric = ?",
            ["rmse"],
        ).fetchall()
        fits = con.execute("SELECT DISTINCT model FROM model_fits").fetchall()
        lm_rows = con.execute(
            "SELECT split_id, kind, count(*), min(len(vector)) FROM lm_embeddings GROUP BY ALL"
        ).fetchall()
        lm_preds = con.execute(
            "SELECT fold, count(*) FROM lm_predictions WHERE split_id = 'random_s0' GROUP BY ALL"
        ).fetchall()
    assert {(s, m) for s, m, *_ in rows} == {
        (s, m)
        for s in out["baselines"]["splits"]
        for m in ("global_mean", "bias_als", "lightfm_hybrid", "lm_two_tower", "fusion")
    }
    assert all(lo <= v <= hi for *_, v, lo, hi in rows)
    assert {m for (m,) in fits} == set(models)
    assert {(s, k) for s, k, n, dim in lm_rows if n > 0 and dim == 2 * TINY_BERT["hidden_size"]} == {
        (s, k) for s in ("random_s0", "temporal_s0") for k in ("user", "item")
    }
    sizes = out["prepare"]["splits"]["random_s0"]
    assert dict(lm_preds) == {"validation": sizes["validation"], "test": sizes["test"]}
    report = out["report"]
    assert "## Conclusions" in open(report["markdown"]).read() and open(report["html"]).read().startswith("<!DOCTYPE")

    # a rerun with unchanged inputs reuses the cached fits (identical fit times), under a new run id
    again = full(params)
    assert again["baselines"]["run_id"] != out["baselines"]["run_id"]
    with duckdb.connect(out["prepare"]["database"], read_only=True) as con:
        fits = con.execute(
            "SELECT run_id, split_id, model, fit_seconds FROM model_fits WHERE run_id IN (?, ?)",
            [out["baselines"]["run_id"], again["baselines"]["run_id"]],
        ).df()
    first, second = (
        fits[fits.run_id == r].drop(columns="run_id").sort_values(["split_id", "model"])
        for r in (out["baselines"]["run_id"], again["baselines"]["run_id"])
    )
    assert len(first) == 2 * len(models) and first.to_numpy().tolist() == second.to_numpy().tolist()

    # each run published its temporal split's fused model; the first became the champion, and it serves
    from tasks.registry import load_champion

    published = out["baselines"]["published"]
    assert again["baselines"]["published"]["champion"] == published["version"] == published["champion"]
    with duckdb.connect(out["prepare"]["database"], read_only=True) as con:
        assert con.execute("SELECT split_id FROM model_registry ORDER BY published_at").fetchall() == [
            ("temporal_s0",),
            ("temporal_s0",),
        ]
    champion = load_champion(tmp_path / "ws")
    assert champion.version == published["version"] and champion.model.name == "fusion"
    assert len(champion.recommend("u1", 3).items) == 3
    # the second run's model (same fits, same per-user values) was gated out: no gain
    gate = again["baselines"]["promotion"]
    assert not gate["promote"] and "not better" in gate["reason"] and gate["champion"] == gate["challenger"]

    # promotion "always" moves the champion, and every decision is a row
    from models.promotion import PromotionConfig

    third = full(
        params.model_copy(
            update={"baselines": params.baselines.model_copy(update={"promotion": PromotionConfig(mode="always")})}
        )
    )
    assert third["baselines"]["promotion"]["promote"]
    assert load_champion(tmp_path / "ws").version == third["baselines"]["published"]["version"]
    with duckdb.connect(out["prepare"]["database"], read_only=True) as con:
        actions = [a for (a,) in con.execute("SELECT action FROM promotions ORDER BY decided_at").fetchall()]
    assert actions == ["publish", "keep", "promote"]


def test_failed_validation_stops_the_flow_and_marks_the_run(prefect_harness, tmp_path):
    from flows.prepare import PrepareParams, prepare

    path = write_lines(tmp_path / "r.json", [*[review(f"u{i}", "i") for i in range(5)], "{broken"])
    with pytest.raises(ValidationFailed, match=r"r.json: 1 of 6 records .* line 6: invalid JSON"):
        prepare(PrepareParams(data=str(path), workspace=str(tmp_path / "ws")))
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "module",
    [
        "flows.prepare",
        "flows.full",
        "flows.baselines",
        "flows.report",
        "flows.recommend",
        "flows.registry",
        "flows.search",
        "serve",
    ],
)
def test_cli_help(module):
    out = _cli(module, "--help")
    assert out.returncode == 0
    flag = {
        "flows.baselines": "--k",
        "flows.report": "--run",
        "flows.recommend": "--user",
        "flows.registry": "rollback",
        "flows.search": "--dask-address",
        "serve": "--port",
    }
    assert flag.get(module, "--data") in out.stdout


def test_cli_recommend_registry_and_serve_without_a_champion(tmp_path):
    for args in (("flows.recommend", "--user", "u1"), ("serve",), ("flows.registry", "rollback")):
        out = _cli(*args, "--workspace", str(tmp_path))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "no champion model" in out.stderr or "no prepared workspace" in out.stderr
    out = _cli("flows.recommend", "--user", "u1", "-k", "0")
    assert out.returncode == 2 and "k" in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_path_is_one_clear_line(tmp_path):
    out = _cli("flows.prepare", "--data", str(tmp_path / "missing.json"))
    assert out.returncode == 2
    assert f"error: dataset path {tmp_path / 'missing.json'} does not exist" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_cli_prepare_prints_counts(tmp_path):
    path = write_lines(
        tmp_path / "r.json", [review(f"u{i // 6}", f"i{i % 6}", 1 + i % 5, ts=1_400_000_000 + i) for i in range(24)]
    )
    out = _cli("flows.prepare", "--data", str(path), "--workspace", str(tmp_path / "ws"), "--no-data-docs")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "interactions          24        24            0          0           0" in out.stdout
    assert "random_s0" in out.stdout and "24 ratings from 4 users on 6 items" in out.stdout


def test_cli_baselines_needs_a_prepared_workspace(tmp_path):
    out = _cli("flows.baselines", "--workspace", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no prepared workspace at" in out.stderr and "Traceback" not in out.stderr


def test_cli_report_needs_an_evaluated_run(tmp_path):
    out = _cli("flows.report", "--workspace", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no prepared workspace at" in out.stderr and "Traceback" not in out.stderr
    from tasks.report import latest_evaluated_run
    from tasks.store import Workspace, connect

    workspace = Workspace.for_dataset("x", str(tmp_path / "ws"))
    with connect(workspace.db):
        pass
    out = _cli("flows.report", "--workspace", str(workspace.root))
    assert out.returncode == 2 and "no evaluated run in" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(ValueError, match="no evaluated run"):
        latest_evaluated_run(workspace.db)


def test_dask_runner_fits_splits_in_parallel_with_the_same_results(prefect_harness, tmp_path):
    """prefect-dask on a local cluster: the splits' fits and the LightFM search trials run on worker processes
    and give exactly what the sequential runner gives."""
    from flows.baselines import BaselinesParams, baselines
    from flows.prepare import PrepareParams, prepare
    from flows.runners import RunnerConfig
    from flows.search import SearchParams, search
    from models.evaluation import EvalConfig
    from tasks.train import TrainConfig

    records = [review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i) for i in range(64)]
    workspace = str(tmp_path / "ws")
    prepared = prepare(
        PrepareParams(
            data=str(write_lines(tmp_path / "r.json", records)),
            workspace=workspace,
            seeds=(0, 1),
            split={"protocols": ("random",)},
            validation={"data_docs": False},
        )
    )
    train = TrainConfig(models=("global_mean", "bias_als", "lightfm_hybrid"), lightfm_max_epochs=5, lightfm_trials=0)
    runs = {}
    for kind in ("sequential", "dask"):
        out = baselines(
            BaselinesParams(
                workspace=workspace,
                splits=tuple(prepared["splits"]),
                train=train,
                evaluation=EvalConfig(n_boot=100),
                publish=False,
                refresh_cache=True,
                runner=RunnerConfig(kind=kind, workers=2),
            )
        )
        runs[kind] = out["run_id"]
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        values = {
            kind: con.execute(
                "SELECT split_id, model, metric, segment, value FROM eval_results WHERE run_id = ? ORDER BY ALL", [run]
            ).fetchall()
            for kind, run in runs.items()
        }
    assert {row[0] for row in values["dask"]} == {"random_s0", "random_s1"}
    assert len(values["dask"]) > 50 and values["dask"] == values["sequential"]

    found = search(
        SearchParams(
            workspace=workspace,
            trials=3,
            train=train.model_copy(update={"lightfm_max_epochs": 10}),
            runner=RunnerConfig(kind="dask", workers=2),
        )
    )
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        stored = con.execute(
            "SELECT trial, validation_ndcg FROM lightfm_trials WHERE run_id = ? ORDER BY trial", [found["run_id"]]
        ).fetchall()
    assert [t for t, _ in stored] == [0, 1, 2] and found["trials"][0]["config"]["learning_rate"] == 0.05
    assert found["best"]["validation_ndcg"] == max(v for _, v in stored)
