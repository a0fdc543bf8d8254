"""The prepare flow end to end under one Prefect test backend, and the command line's behaviour."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from builders import TINY_BERT, review, write_lines

from data_checks import ValidationFailed

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_prepare_default_dataset(prefect_harness, tmp_path):
    from flows.params import PrepareParams
    from flows.prepare import prepare

    summary = prepare(PrepareParams(workspace=str(tmp_path / "ws")))
    t = summary.tables
    assert (t["interactions"], t["users_with_ratings"], t["items_with_ratings"]) == (10_261, 1_429, 900)
    assert summary.accounting["interactions"] == {
        "raw": 10_261,
        "kept": 10_261,
        "quarantined": 0,
        "exact_duplicates": 0,
        "superseded": 0,
        "text_duplicates": 0,
    }
    # the default dataset passes the data card, but for its cold items: it has no metadata, so the text models
    # read an empty profile for each of them and their cold-item verdicts are withheld
    warnings = summary.data_card["warnings"]
    assert [(w["code"], w["splits"]) for w in warnings] == [("no_cold_content", ["cold_items_s0"])]
    assert warnings[0]["message"].startswith("cold_items_s0: 0 of ")
    assert summary.data_card["variant_duplicates"]["groups"] == 4
    folds = [summary.splits[f"kfold_s0_f{f}"] for f in range(1, 6)]  # the default: every rating tested once
    assert sum(fold["test"] for fold in folds) == 10_261
    assert all(sum(fold.values()) == 10_261 for fold in folds)
    assert summary.splits["temporal_s0"] == {"train": 10_261 - 2 * 1_429, "validation": 1_429, "test": 1_429}
    with duckdb.connect(summary.database, read_only=True) as con:
        status, fingerprint, params = con.execute(
            "SELECT status, input_fingerprint, parameters FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone()
    assert status == "completed" and len(fingerprint) == 64 and json.loads(params)["split"]["seed"] == 0
    assert (tmp_path / "ws" / "runs" / summary.run_id / "data_docs" / "index.html").exists()


MODELS = ("global_mean", "bias_als", "popularity", "lightfm_hybrid", "lm_two_tower", "fusion")


@pytest.fixture(scope="module")
def experiment(prefect_harness, tmp_path_factory):
    """The full flow once on 64 reviews with a tiny transformer: (its parameters, its summary, workspace).
    User u0 wrote one text on all 8 of its items (planted variant duplicates: 12.5% of interactions)."""
    from flows.params import FullParams, PrepareParams, TrainSettings
    from models.evaluation import EvalConfig
    from models.registry import TrainConfig

    tmp_path = tmp_path_factory.mktemp("full")
    planted = "The same strap in every colour, and I love every one of them."
    records = [
        review(
            f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i, text=planted if i < 8 else "fine"
        )
        for i in range(64)
    ]
    path = write_lines(tmp_path / "r.json", records)
    tiny_lm = {"encoder_config": TINY_BERT, "max_length": 32, "batch_size": 8, "max_epochs": 1, "progress_bar": False}
    params = FullParams(
        prepare=PrepareParams(
            data=str(path), workspace=str(tmp_path / "ws"), split={"protocols": ("random", "temporal")}
        ),
        train=TrainSettings(
            train=TrainConfig(models=MODELS, lightfm_max_epochs=5, lightfm_trials=0, lm_overrides=tiny_lm),
            evaluation=EvalConfig(n_boot=100),
        ),
    )
    from flows.full import full

    handler, root = _Capture(), _Capture()
    logging.getLogger("prefect").addHandler(handler)
    logging.getLogger().addHandler(root)
    try:
        out = full(params)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
        logging.getLogger().removeHandler(root)
    RUN_LOG.extend(handler.messages)
    ROOT_LOG.extend(root.messages)
    return params, out, tmp_path / "ws"


RUN_LOG: list[str] = []  # what the experiment fixture's run logged through Prefect's run loggers
ROOT_LOG: list[str] = []  # what reached the root logger's handlers


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(f"{record.name} {record.getMessage()}")


def test_the_lm_trainers_progress_reaches_the_runs_log(experiment):
    lines = [line for line in RUN_LOG if line.startswith("prefect.task_runs") and "[lm] " in line]
    assert any("[lm] training: " in line for line in lines), RUN_LOG[-20:]
    assert any("[lm] validation at step" in line for line in lines)
    noise = ("UNEXPECTED", "litlogger", "Loading weights", "| Status", '"readout_val_mse"')
    assert not any(mark in line for line in RUN_LOG for mark in noise)  # known noise stays out
    assert any("[lm] done: validation MSE" in line for line in lines)
    # the experiment loop says which model it fits, and how long fitting and evaluating took
    steps = [line for line in RUN_LOG if line.startswith("prefect.task_runs") and "random_s0: " in line]
    assert any("random_s0: fitting bias_als (" in line for line in steps), RUN_LOG[-20:]
    assert any(" bias_als fitted in " in line and ", evaluated in " in line for line in steps)
    assert not any(line.startswith("reclab.lm ") for line in ROOT_LOG)  # once, through the run logger only


@pytest.fixture(scope="module")
def rerun(experiment):
    """The same experiment again: every fit from the cache, a new run, a second published model."""
    from flows.full import full

    params, _, _ = experiment
    return full(params)


def test_full_flow_trains_and_evaluates_every_model_on_every_split(experiment):
    _, out, _ = experiment
    assert out.prepare.tables["interactions"] == 64
    assert set(out.train.splits) == {"random_s0", "temporal_s0"}
    with duckdb.connect(out.prepare.database, read_only=True) as con:
        rows = con.execute(
            "SELECT split_id, model, value, ci_low, ci_high FROM eval_results WHERE segment = 'all' AND metric = ?",
            ["rmse"],
        ).fetchall()
        fits = con.execute("SELECT DISTINCT model FROM model_fits").fetchall()
    rating_models = ("global_mean", "bias_als", "lightfm_hybrid", "lm_two_tower", "fusion")
    assert {(s, m) for s, m, *_ in rows} == {(s, m) for s in out.train.splits for m in rating_models}
    assert all(lo <= v <= hi for *_, v, lo, hi in rows)
    assert {m for (m,) in fits} == set(MODELS)


def test_full_flow_stores_the_lms_vectors_and_predictions(experiment):
    _, out, _ = experiment
    with duckdb.connect(out.prepare.database, read_only=True) as con:
        lm_rows = con.execute(
            "SELECT split_id, kind, count(*), min(len(vector)) FROM lm_embeddings GROUP BY ALL"
        ).fetchall()
        lm_preds = con.execute(
            "SELECT fold, count(*) FROM lm_predictions WHERE split_id = 'random_s0' GROUP BY ALL"
        ).fetchall()
    assert {(s, k) for s, k, n, dim in lm_rows if n > 0 and dim == 2 * TINY_BERT["hidden_size"]} == {
        (s, k) for s in ("random_s0", "temporal_s0") for k in ("user", "item")
    }
    sizes = out.prepare.splits["random_s0"]
    assert dict(lm_preds) == {"validation": sizes["validation"], "test": sizes["test"]}


def test_planted_variant_duplicates_are_flagged_in_prepare_and_in_the_report(experiment):
    _, out, _ = experiment
    card = out.prepare.data_card
    assert card["variant_duplicates"] == {"interactions": 8, "share": 8 / 64, "groups": 1}
    warning = next(w for w in card["warnings"] if w["code"] == "variant_duplicates")
    assert warning["splits"] == ["random_s0", "temporal_s0"]
    markdown = open(out.report.markdown).read()
    first_screen = markdown.split("## Verdict")[0]
    assert "> **Warning.** Data card: 12% of interactions (8 in 1 groups) share one user's identical review" in (
        first_screen
    )
    # a warning changes the conclusion: u0's held-out pairs have their twin in training (and 64 ratings make
    # folds under the minimum size), so no split is judged, and the verdict says why and what to do
    verdict = markdown.split("## Verdict")[1].split("## For whom")[0]
    withheld = {s for w in card["warnings"] if w["code"] in ("text_twins", "small_fold") for s in w["splits"]}
    assert withheld == {"random_s0", "temporal_s0"}
    assert verdict.startswith(
        "\n\nBottom line: nothing was judged. 8 comparisons on random_s0, temporal_s0 are not judged"
    )
    assert "### Not judged" in verdict and "--protocols kfold" in verdict


def test_full_flow_writes_the_report(experiment):
    _, out, _ = experiment
    report = out.report
    assert "## Verdict" in open(report.markdown).read() and open(report.html).read().startswith("<!DOCTYPE")


def test_full_flow_publishes_its_first_model_as_the_champion(experiment):
    from models.serving.published import load_champion

    _, out, workspace = experiment
    published = out.train.published
    assert published.champion == published.version
    from tasks.store import Workspace

    key = Workspace(Path(workspace)).user_key(create=False)
    champion = load_champion(workspace, key)
    assert champion.version == published.version and champion.model.name == "fusion"
    rec = champion.recommend("u1", 3)  # a raw id, pseudonymised on arrival: known, personalised
    assert len(rec.items) == 3 and rec.strategy == "personalised" and rec.user_id == "u1"
    # the published bundle knows users by pseudonym only; the workspace's key is owner-only
    assert "u1" not in set(champion.model.user_ids) and champion.model.user_key_id_ is not None
    assert (Path(workspace) / "secret.key").stat().st_mode & 0o777 == 0o600


def test_a_rerun_reuses_the_cached_fits_and_the_gate_keeps_the_champion(experiment, rerun):
    _, out, _ = experiment
    assert rerun.train.run_id != out.train.run_id
    runs = (out.train.run_id, rerun.train.run_id)
    with duckdb.connect(out.prepare.database, read_only=True) as con:
        fits = con.execute(
            "SELECT run_id, split_id, model, fit_seconds FROM model_fits WHERE run_id IN (?, ?)", list(runs)
        ).df()
        published = con.execute("SELECT split_id FROM model_registry ORDER BY published_at").fetchall()
    first, second = (fits[fits.run_id == r].drop(columns="run_id").sort_values(["split_id", "model"]) for r in runs)
    assert len(first) == 2 * len(MODELS) and first.to_numpy().tolist() == second.to_numpy().tolist()  # cached
    with duckdb.connect(out.prepare.database, read_only=True) as con:
        extras = con.execute("SELECT model, extras FROM model_fits WHERE run_id = ?", [rerun.train.run_id]).fetchall()
    # every model of the rerun, the fusion included, restored from the fit store: nothing refitted
    assert len(extras) == 2 * len(MODELS) and all(json.loads(e).get("reused") for _, e in extras), extras
    # each run published its temporal split's fused model; the second (same fits) was gated out: no gain
    assert published == [("temporal_s0",), ("temporal_s0",)]
    assert rerun.train.published.champion == out.train.published.version
    gate = rerun.train.promotion
    assert not gate["promote"] and "not better" in gate["reason"] and gate["champion"] == gate["challenger"]


def test_promotion_always_moves_the_champion_and_every_decision_is_a_row(experiment, rerun):
    from flows.full import full
    from models.serving import PromotionConfig
    from models.serving.published import load_champion

    params, out, workspace = experiment
    always = params.train.model_copy(update={"promotion": PromotionConfig(mode="always")})
    third = full(params.model_copy(update={"train": always}))
    assert third.train.promotion["promote"]
    from tasks.store import Workspace

    key = Workspace(Path(workspace)).user_key(create=False)
    assert load_champion(workspace, key).version == third.train.published.version
    with duckdb.connect(out.prepare.database, read_only=True) as con:
        actions = [a for (a,) in con.execute("SELECT action FROM promotions ORDER BY decided_at").fetchall()]
    assert actions == ["publish", "keep", "promote"]


def test_failed_validation_stops_the_flow_and_marks_the_run(prefect_harness, tmp_path):
    from flows.params import PrepareParams
    from flows.prepare import prepare

    path = write_lines(tmp_path / "r.json", [*[review(f"u{i}", "i") for i in range(5)], "{broken"])
    with pytest.raises(ValidationFailed, match=r"r.json: 1 of 6 records .* line 6: invalid JSON"):
        prepare(PrepareParams(data=str(path), workspace=str(tmp_path / "ws")))
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]


HEAVY = ("prefect", "pandas", "torch", "duckdb", "great_expectations", "lightning", "transformers", "lightfm")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "module",
    [
        "flows.prepare",
        "flows.full",
        "flows.train",
        "flows.report",
        "flows.recommend",
        "flows.search",
        "serve",
        "serve.registry",
    ],
)
def test_cli_help(module):
    """Every command answers --help, having imported none of the heavy libraries (that is what makes it
    answer at once: Prefect alone takes seconds to import)."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{module!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print('heavy:', sorted(set(sys.modules) & set(HEAVY)))\n"
    ).replace("HEAVY", repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "heavy: []"
    flag = {
        "flows.train": "--k",
        "flows.report": "--run",
        "flows.recommend": "--user",
        "serve.registry": "rollback",
        "flows.search": "--dask-address",
        "serve": "--port",
    }
    assert flag.get(module, "--data") in out.stdout


def test_cli_recommend_registry_and_serve_without_a_champion(tmp_path):
    for args in (("flows.recommend", "--user", "u1"), ("serve",), ("serve.registry", "rollback")):
        out = _cli(*args, "--workspace", str(tmp_path))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "no champion model" in out.stderr or "no prepared workspace" in out.stderr
    out = _cli("flows.recommend", "--user", "u1", "--k", "0")
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
    assert "24 ratings from 4 users on 6 items" in out.stdout
    # the default protocols: 5 user-stratified folds, every rating tested exactly once (5+5+5+4+5 = 24)
    tests = [int(line.split()[3]) for line in out.stdout.splitlines() if line.startswith("kfold_s0_f")]
    assert tests == [5, 5, 5, 4, 5] and "kfold_s0_f4                   18           2         4" in out.stdout


def test_cli_train_without_the_fusion_publishes_nothing_and_says_so(tmp_path):
    """Only the fused model is published: training a subset without it completes, with a warning, instead of
    failing after every fit."""
    records = [review(f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i) for i in range(64)]
    data, workspace = write_lines(tmp_path / "r.json", records), str(tmp_path / "ws")
    out = _cli(
        "flows.prepare", "--data", str(data), "--workspace", workspace, "--no-data-docs", "--protocols", "random"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    out = _cli("flows.train", "--workspace", workspace, "--models", "global_mean", "bias_als", "--splits", "random_s0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "nothing is published" in out.stdout + out.stderr and "bias_als" in out.stdout
    assert not (tmp_path / "ws" / "registry" / "champion.json").exists()


def test_cli_train_needs_a_prepared_workspace(tmp_path):
    out = _cli("flows.train", "--workspace", str(tmp_path / "nowhere"))
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
    from flows.params import PrepareParams, RunnerConfig, SearchParams, TrainInputs, TrainSettings
    from flows.prepare import prepare
    from flows.search import search
    from flows.train import train as train_flow
    from models.evaluation import EvalConfig
    from models.registry import TrainConfig

    planted = "The same strap in every colour, and I love every one of them."
    records = [
        review(
            f"u{i // 8}", f"i{(i * 5) % 12}", 1 + (i * 7) % 5, ts=1_400_000_000 + i, text=planted if i < 8 else "fine"
        )
        for i in range(64)
    ]
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
        out = train_flow(
            TrainSettings(
                train=train,
                evaluation=EvalConfig(n_boot=100),
                publish=False,
                refresh_cache=True,
                runner=RunnerConfig(kind=kind, workers=2),
            ),
            TrainInputs.of(prepared),
        )
        runs[kind] = out.run_id
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
            split="random_s0",
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


def test_train_fractions_make_reduced_splits_that_are_trained_and_judged_as_units_of_their_own(
    prefect_harness, tmp_path
):
    """--train-fractions 0.5 1.0: prepare makes random_s0 and random_s0_t50 (half of each user's training
    ratings, the same test fold), train fits both, and each is a judged unit with its own primary rows."""
    from flows.params import PrepareParams, TrainInputs, TrainSettings
    from flows.prepare import prepare
    from flows.train import train as train_flow
    from models.evaluation import EvalConfig
    from models.registry import TrainConfig

    records = [review(f"u{i // 10}", f"i{(i * 7) % 23}", 1 + (i * 3) % 5, ts=1_400_000_000 + i) for i in range(300)]
    workspace = str(tmp_path / "ws")
    prepared = prepare(
        PrepareParams(
            data=str(write_lines(tmp_path / "r.json", records)),
            workspace=workspace,
            split={"protocols": ("random",), "train_fractions": (0.5, 1.0)},
            validation={"data_docs": False},
        )
    )
    assert list(prepared.splits) == ["random_s0", "random_s0_t50"]
    full, half = prepared.splits["random_s0"], prepared.splits["random_s0_t50"]
    assert (half["validation"], half["test"]) == (full["validation"], full["test"])
    assert full["train"] / 2 <= half["train"] < full["train"] / 2 + 30  # ceil per user (30 users)
    out = train_flow(
        TrainSettings(
            train=TrainConfig(models=("global_mean", "bias_als", "popularity", "fusion"), lightfm_trials=0),
            evaluation=EvalConfig(n_boot=100),
            publish=False,
        ),
        TrainInputs.of(prepared),
    )
    with duckdb.connect(str(tmp_path / "ws" / "reclab.duckdb"), read_only=True) as con:
        units = con.execute(
            "SELECT DISTINCT split_id FROM eval_differences WHERE run_id = ? AND family = 'primary' ORDER BY 1",
            [out.run_id],
        ).fetchall()
    assert units == [("random_s0",), ("random_s0_t50",)]
