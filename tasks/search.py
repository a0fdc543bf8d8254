"""LightFM hyperparameter search: each trial an independent task (so a Dask cluster can run them at once)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from tasks import tables
from tasks.store import connect, replace_run_rows
from tasks.train import TrainConfig, lightfm_hyperparameters, load_split, split_protocol


@task(cache_policy=NONE, task_run_name="lightfm-trial-{trial}")
def lightfm_trial(db: Path, split_id: str, trial: int, config: dict, train: TrainConfig) -> dict:
    """Fit the LightFM hybrid with one fixed configuration on the split's training fold; early stopping and
    the score on validation NDCG@K (test is never read)."""
    from models.lightfm_hybrid import LightFMHybrid

    with connect(db, read_only=True) as con:
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
    model = LightFMHybrid(
        loss=train.lightfm_loss,
        num_threads=train.lightfm_threads,
        search_trials=0,
        max_epochs=train.lightfm_max_epochs,
        seed=train.seed,
        cold_validation=protocol == "cold_items",
        **lightfm_hyperparameters(config),
    )
    start = time.perf_counter()
    model.fit(data["train"], data["validation"], items=data["items"], users=data["users"])
    return {
        "trial": trial,
        "config": config,
        "validation_ndcg": float(model.validation_ndcg_),
        "epochs": int(model.epochs_),
        "fit_seconds": time.perf_counter() - start,
    }


@task(cache_policy=NONE)
def record_trials(db: Path, run_id: str, split_id: str, trials: list[dict]) -> None:
    """Write the search's trials under this run (the only writer of ``lightfm_trials``)."""
    frame = pd.DataFrame(trials).assign(config=lambda f: f["config"].map(json.dumps))
    with connect(db) as con:
        replace_run_rows(con, tables.LIGHTFM_TRIALS, run_id, split_id, frame)
