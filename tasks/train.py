"""Train: fit every configured model on one split (``models.experiment``), each restored from the workspace's
fit store when its inputs are unchanged (the one cache of fits), and persist the outputs: per-user test values,
the fits' parameters and times, the LM's vectors and predictions, and the fused model's bundle.

A split's outputs travel from the fit to the tables as JSON naming Parquet files with their sha256 (no pickle
is ever written or read back).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from models.evaluation import EvalConfig
from models.registry import FUSION, LANGUAGE, TrainConfig
from models.serving.bundle import save_model, sha256
from tasks import tables
from tasks.logs import forward_to_run_logger
from tasks.split import load_split, split_fingerprint, split_protocol
from tasks.store import PROJECT_ROOT, Workspace, connect, replace_run_rows

# Code whose change invalidates cached fits: the models and how they are trained and fed.
CACHE_SOURCES = ("models", "tasks/train.py", "tasks/split.py")
# judged after the fit, from its stored per-user values: a change there needs no refit
CACHE_EXEMPT = ("models/evaluation/comparisons.py", "models/evaluation/inference.py")
# the workspace folder where each split's fitted models are kept between runs (models.experiment.FitStore):
# adding a model to a run refits only it and the fusion; safe to delete (everything is refitted)
FIT_STORE = "fits"
# the workspace folder of the LM encoder's per-text frozen-layer states (models.lm.text_cache), shared by
# every split, fold, seed and run; safe to delete (states are computed again)
TEXT_STATES = "text_states"
# the evaluation's settings that act after the fit, on its stored per-user values: not part of any fit's key
JUDGED_LATER = {"n_boot", "alpha", "min_segment_users"}


@dataclass(frozen=True)
class LMTables:
    """The fitted LM's rows: its user and item vectors (``lm_embeddings``) and its validation and test rating
    predictions (``lm_predictions``)."""

    embeddings: pd.DataFrame
    predictions: pd.DataFrame


@dataclass(frozen=True)
class SavedSplitFit:
    """One split's fit, in the one shape it keeps from the fit to the tables: every model's per-user test values
    (``eval_per_user``, after evaluation), the fit records (``model_fits``: chosen configuration, seconds,
    extras), the LM's rows (None without the LM) and the fused model's bundle folder (None without the fusion),
    which publishing installs. :meth:`save` writes it as Parquet files beside the bundle in the run's folder and
    returns their JSON (what the task runner hands back: no pickle); :meth:`load` reads it back, every file
    checked."""

    split_id: str
    protocol: str
    per_user: pd.DataFrame
    fits: list[dict]
    lm: LMTables | None = None
    bundle: str | None = None

    def save(self, folder: Path) -> dict:
        frames = {"per_user": self.per_user}
        if self.lm is not None:
            frames |= {"lm_embeddings": self.lm.embeddings, "lm_predictions": self.lm.predictions}
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, frame in frames.items():
            path = folder / f"{name}.parquet"
            frame.to_parquet(path, index=False)
            files[name] = {"path": str(path), "sha256": sha256(path)}
        saved = {"split_id": self.split_id, "protocol": self.protocol, "fits": self.fits, "bundle": self.bundle}
        return json.loads(json.dumps({**saved, "files": files}, default=_plain))  # plain JSON: nothing to rebuild

    @classmethod
    def load(cls, saved: dict) -> SavedSplitFit:
        frames = {}
        for name, entry in saved["files"].items():
            path = Path(entry["path"])
            if not path.exists() or sha256(path) != entry["sha256"]:
                raise FitOutputsAltered(f"the fit output {path} is missing or was altered since this run wrote it")
            frames[name] = pd.read_parquet(path)
        lm = LMTables(frames["lm_embeddings"], frames["lm_predictions"]) if "lm_embeddings" in frames else None
        fields = {key: saved[key] for key in ("split_id", "protocol", "fits", "bundle")}
        return cls(per_user=frames["per_user"], lm=lm, **fields)


@task(cache_policy=NONE)
def fit_split(
    workspace: Workspace,
    split_id: str,
    config: TrainConfig,
    eval_config: EvalConfig,
    work_dir: Path,
    refresh: bool = False,
) -> dict:
    """Fit the configured models on one split and compute their per-user test values; returns the JSON of
    :meth:`SavedSplitFit.save` (its tables in ``<work_dir>/<split>/outputs``; read them with
    :meth:`SavedSplitFit.load`).

    Every model whose split data, settings and code are unchanged is restored from the workspace's fit store
    (``models.experiment.FitStore``, the fusion included) instead of refitted; ``refresh``: refit every model
    and replace what the store keeps."""
    from models import experiment  # the pure fit of the same name

    with connect(workspace.db, read_only=True) as con:  # released before the (long) fits
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
        key = fit_store_key(con, split_id, protocol, eval_config)
        store = experiment.FitStore(workspace.root / FIT_STORE / split_id, key, refresh=refresh)
    folder = Path(work_dir) / split_id
    with forward_to_run_logger():  # the LM trainer's progress lines reach the run's log
        fitted = experiment.fit_split(
            data, protocol, split_id, config, eval_config, folder, store, workspace.root / TEXT_STATES
        )
    lm = exporting_lm(fitted.models)
    saved = SavedSplitFit(
        split_id,
        protocol,
        fitted.per_user,
        fitted.fits,
        lm_tables(lm, data) if lm is not None else None,
        save_bundle(fitted.models.get(FUSION), folder / "bundle"),
    )
    return saved.save(folder / "outputs")


@task(cache_policy=NONE)
def record_fits(workspace: Workspace, run_id: str, outputs: SavedSplitFit) -> None:
    """Write one split's fits (and the LM's embeddings and predictions) under this run."""
    with connect(workspace.db) as con:
        write_fits(con, run_id, outputs.split_id, outputs.fits, outputs.lm)


def save_bundle(model, folder: Path) -> str | None:
    """Save the fitted fusion (with its components) as a model bundle the registry can publish."""
    if model is None:
        return None
    if folder.exists():
        shutil.rmtree(folder)
    return str(save_model(model, folder))


def exporting_lm(models: dict):
    """The first fitted language model that exports user/item vectors and rating predictions (the two-tower LM
    and text_frozen; the sequential LM ranks only), or None: what lm_embeddings and lm_predictions hold."""
    return next((m for name in LANGUAGE if hasattr(m := models.get(name), "embeddings")), None)


def lm_tables(model, data: dict[str, pd.DataFrame]) -> LMTables:
    """The fitted LM's user/item vectors and its validation/test rating predictions, as table rows."""
    users, items = model.embeddings()
    embeddings = pd.concat(
        [
            pd.DataFrame({"kind": "user", "id": users.index, "vector": users.to_numpy(np.float32).tolist()}),
            pd.DataFrame({"kind": "item", "id": items.index, "vector": items.to_numpy(np.float32).tolist()}),
        ],
        ignore_index=True,
    )
    predictions = pd.concat(
        [
            frame[["user_id", "item_id"]].assign(
                fold=fold, prediction=model.predict(frame["user_id"], frame["item_id"])
            )
            for fold, frame in (("validation", data["validation"]), ("test", data["test"]))
        ],
        ignore_index=True,
    )
    return LMTables(embeddings, predictions)


def write_fits(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    split_id: str,
    fits: list[dict],
    lm: LMTables | None = None,
) -> None:
    """Record the fits (and, when the LM was trained, its embeddings and predictions) of one split."""
    for table, key in ((tables.LM_EMBEDDINGS, "embeddings"), (tables.LM_PREDICTIONS, "predictions")):
        replace_run_rows(con, table, run_id, split_id, None if lm is None else getattr(lm, key))
    frame = pd.DataFrame(
        [
            {
                "model": f["model"],
                "params": json.dumps(f["params"], default=str),
                "fit_seconds": f["fit_seconds"],
                "eval_seconds": f["eval_seconds"],
                "extras": json.dumps(f["extras"]),
            }
            for f in fits
        ]
    )
    replace_run_rows(con, tables.MODEL_FITS, run_id, split_id, frame)


# --- the fit store's key -------------------------------------------------------------------------------------------
def source_fingerprint() -> str:
    """sha256 of the Python sources in ``CACHE_SOURCES`` (a README or flow change keeps the cache)."""
    digest = hashlib.sha256()
    for entry in CACHE_SOURCES:
        path = PROJECT_ROOT / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            if str(file.relative_to(PROJECT_ROOT)) in CACHE_EXEMPT:
                continue
            digest.update(str(file.relative_to(PROJECT_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def fit_store_key(con: duckdb.DuckDBPyConnection, split_id: str, protocol: str, eval_config: EvalConfig) -> str:
    """What every kept fit of a split depends on besides its own settings: the split's content, its protocol,
    the evaluation settings that shape its test values, and the model code."""
    data = split_fingerprint(con, split_id)
    evaluation = eval_config.model_dump_json(exclude=JUDGED_LATER)
    return hashlib.sha256(f"{data}|{protocol}|{evaluation}|{source_fingerprint()}".encode()).hexdigest()


class FitOutputsAltered(RuntimeError):
    """A split's output files were deleted or altered between the fit that wrote them and the train flow."""


def _plain(value):
    """numpy scalars and arrays as Python numbers and lists (anything else is a bug: refuse it)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"a fit summary holds a {type(value).__name__}, which is not plain JSON")
