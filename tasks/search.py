"""LightFM hyperparameter search: each trial an independent task (so a Dask cluster can run them at once)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models.registry import BuildContext, TrainConfig, build_model
from models.tuning import candidates, judge_fit
from tasks import tables
from tasks.logs import forward_to_run_logger
from tasks.split import load_split, split_protocol
from tasks.store import Workspace, connect, replace_run_rows


def lightfm_candidates(train: TrainConfig, trials: int, seed: int) -> list[dict]:
    """The tuner's candidates for the LightFM hybrid built from ``train``: its configuration, then ``trials``
    − 1 seeded draws from its search space (duplicates dropped)."""
    model = build_model("lightfm_hybrid", train, BuildContext("random", Path(".")))
    space = replace(model.search_space(), trials=max(trials - 1, 0), seed=seed)
    return candidates(model, space)


@task(cache_policy=NONE, task_run_name="lightfm-trial-{trial}")
def lightfm_trial(workspace: Workspace, split_id: str, trial: int, config: dict, train: TrainConfig) -> dict:
    """One candidate of the tuner: the LightFM hybrid with ``config`` fitted on the split's training fold,
    early-stopped and judged on validation NDCG@K (test is never read)."""
    with connect(workspace.db, read_only=True) as con:
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
    model = build_model("lightfm_hybrid", train, BuildContext(protocol, workspace.root))
    start = time.perf_counter()
    with forward_to_run_logger():  # LightFM's epoch progress
        fitted, score = judge_fit(
            model,
            config,
            model.search_space(),
            data["train"],
            data["validation"],
            items=data["items"],
            users=data["users"],
        )
    return {
        "trial": trial,
        "config": config,
        "validation_ndcg": float(score),
        "epochs": int(fitted.epochs_),
        "fit_seconds": time.perf_counter() - start,
    }


@task(cache_policy=NONE)
def record_trials(workspace: Workspace, run_id: str, split_id: str, trials: list[dict]) -> None:
    """Write the search's trials under this run (the only writer of ``lightfm_trials``)."""
    frame = pd.DataFrame(trials).assign(config=lambda f: f["config"].map(json.dumps))
    with connect(workspace.db) as con:
        replace_run_rows(con, tables.LIGHTFM_TRIALS, run_id, split_id, frame)
