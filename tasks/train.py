"""Train: fit the baselines and the LightFM hybrid on one split and compute their per-user test values.

Models receive DataFrames only: the training fold *with* its review text (from ``training_reviews``), and
validation/test folds *without* any text, so no model can read a held-out review.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from models.bundle import sha256
from tasks import tables
from tasks.split import training_reviews
from tasks.store import PROJECT_ROOT, connect, replace_run_rows

MODELS = (
    "global_mean",
    "bias_als",
    "biased_mf",
    "popularity",
    "lightfm_cf",
    "lightfm_hybrid",
    "lm_two_tower",
    "fusion",
)  # fusion blends the others (learned on validation), so it is always fitted last


class TrainConfig(BaseModel):
    """Which traditional models to train and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[Literal[MODELS], ...] = MODELS  # type: ignore[valid-type]
    lightfm_loss: Literal["warp", "bpr", "logistic"] = "warp"
    lightfm_threads: int = Field(1, ge=1)  # >1 is faster but not exactly reproducible
    lightfm_trials: int = Field(2, ge=0)  # random configurations tried on validation besides the default
    lightfm_max_epochs: int = Field(30, ge=5)
    # LightFM hyperparameters to use instead of the defaults (keys of models.lightfm_hybrid.SEARCH_SPACE),
    # e.g. the best configuration of `python -m flows.search`
    lightfm_params: dict[Literal["no_components", "learning_rate", "item_alpha", "content_weight"], float] = {}
    lm_profile: Literal["cpu", "gpu"] = "cpu"  # LMConfig overrides for the fine-tuned LM (models.lm_train.PROFILES)
    lm_overrides: dict = {}  # further LMConfig fields, e.g. {"encoder": "/path/to/model", "max_epochs": 3}
    seed: int = 0


def load_split(con: duckdb.DuckDBPyConnection, split_id: str) -> dict[str, pd.DataFrame]:
    """Train (with text), validation and test (without text) folds, items (with training-pair tags), users."""
    held_out = {
        fold: con.execute(
            f"""SELECT i.user_id, i.item_id, i.rating, i.timestamp
                FROM {tables.SPLIT_ASSIGNMENTS} a JOIN {tables.CANONICAL["interactions"]} i USING (user_id, item_id)
                WHERE a.split_id = ? AND a.fold = ? ORDER BY i.user_id, i.item_id""",
            [split_id, fold],
        ).df()
        for fold in ("validation", "test")
    }
    items = con.execute(
        f"""SELECT it.*, t.tags FROM {tables.CANONICAL["items"]} it
            LEFT JOIN (
                SELECT tg.item_id, string_agg(tg.tag, '|' ORDER BY tg.tag) AS tags
                FROM {tables.CANONICAL["tags"]} tg
                JOIN {tables.SPLIT_ASSIGNMENTS} a USING (user_id, item_id)
                WHERE a.split_id = ? AND a.fold = 'train' GROUP BY tg.item_id
            ) t USING (item_id) ORDER BY it.item_id""",
        [split_id],
    ).df()
    users = con.execute(f"SELECT * FROM {tables.CANONICAL['users']} ORDER BY user_id").df()
    return {"train": training_reviews(con, split_id), **held_out, "items": items, "users": users}


def build_model(name: str, config: TrainConfig, protocol: str, work_dir: Path):
    """A fresh, unfitted model by name; ``work_dir`` holds what a model writes (the LM's checkpoints)."""
    from models.baselines import BiasALS, BiasedMF, GlobalMean, Popularity
    from models.lightfm_hybrid import LightFMHybrid
    from models.lm_recommender import LMTwoTower

    lightfm = dict(
        loss=config.lightfm_loss,
        num_threads=config.lightfm_threads,
        search_trials=config.lightfm_trials,
        max_epochs=config.lightfm_max_epochs,
        seed=config.seed,
        cold_validation=protocol == "cold_items",
        **lightfm_hyperparameters(config.lightfm_params),
    )
    return {
        "global_mean": GlobalMean,
        "bias_als": BiasALS,
        "biased_mf": lambda: BiasedMF(seed=config.seed),
        "popularity": Popularity,
        "lightfm_cf": lambda: LightFMHybrid(content=False, **lightfm),
        "lightfm_hybrid": lambda: LightFMHybrid(content=True, **lightfm),
        "lm_two_tower": lambda: LMTwoTower(
            work_dir / name, config.lm_profile, {"seed": config.seed, **config.lm_overrides}
        ),
    }[name]()


def lightfm_hyperparameters(params: dict) -> dict:
    """LightFMHybrid keyword arguments from a configuration dict (``no_components`` is an integer)."""
    return {key: int(value) if key == "no_components" else float(value) for key, value in params.items()}


def _params(model) -> dict:
    """The fitted model's chosen hyperparameters (attributes ending in '_', as scikit-learn names them)."""
    out = {}
    for key, value in vars(model).items():
        if (
            key.endswith("_")
            and not key.startswith("_")
            and isinstance(value, (int, float, str, dict, np.floating, np.integer))
        ):
            out[key] = value.item() if isinstance(value, (np.floating, np.integer)) else value
    return out


def split_protocol(con: duckdb.DuckDBPyConnection, split_id: str) -> str:
    row = con.execute(f"SELECT protocol FROM {tables.SPLITS} WHERE split_id = ?", [split_id]).fetchone()
    if row is None:
        raise KeyError(f"no split {split_id!r} in this workspace; run the prepare flow first")
    return row[0]


def fit_and_evaluate(
    data: dict[str, pd.DataFrame], protocol: str, split_id: str, config: TrainConfig, eval_config, work_dir: Path
) -> dict:
    """Fit every configured model on one split's ``data`` (see :func:`load_split`) and compute its per-user
    test values. Returns {"per_user": DataFrame, "fits": [{model, params, seconds, extras}], "protocol"}."""
    from models.evaluation import per_user_values
    from models.features import item_vectors, metadata_tokens, review_terms

    tokens = metadata_tokens(data["items"])
    for key, terms in review_terms(data["train"], "item_id").items():
        tokens.setdefault(key, []).extend(terms)
    catalogue = np.sort(np.union1d(data["train"]["item_id"].astype(str).unique(), data["items"]["item_id"].astype(str)))
    vectors = pd.DataFrame(item_vectors(catalogue, tokens, seed=config.seed), index=catalogue)
    parts, fits, lm_outputs, components = [], [], None, {}
    order = sorted(config.models, key=lambda name: name == "fusion")
    for name in tqdm(order, desc=f"models on {split_id}", disable=None):
        if name == "fusion":
            from models.fusion import Fusion, FusionConfig

            fusion = FusionConfig(k=eval_config.k, cold_candidates=protocol == "cold_items", seed=config.seed)
            model = Fusion(components, fusion)
        else:
            model = build_model(name, config, protocol, Path(work_dir) / split_id)
        start = time.perf_counter()
        model.fit(data["train"], data["validation"], items=data["items"], users=data["users"])
        fitted = time.perf_counter()
        values, extras = per_user_values(
            model,
            name,
            data["train"],
            data["test"],
            eval_config,
            cold_candidates=protocol == "cold_items",
            item_vectors=vectors.reindex(model.item_ids).fillna(0.0).to_numpy(),
        )
        parts.append(values)
        if name != "fusion":
            components[name] = model
        fits.append(
            {
                "model": name,
                "params": _params(model),
                "fit_seconds": fitted - start,
                "eval_seconds": time.perf_counter() - fitted,
                "extras": extras,
            }
        )
        if name == "lm_two_tower":
            lm_outputs = lm_tables(model, data)
    fused = model if order and order[-1] == "fusion" else None
    bundle = save_bundle(fused, Path(work_dir) / split_id / "bundle")
    return {
        "per_user": pd.concat(parts, ignore_index=True),
        "fits": fits,
        "protocol": protocol,
        "lm": lm_outputs,
        "bundle": bundle,
    }


def save_bundle(model, folder: Path) -> str | None:
    """Save the fitted fusion (with its components) as a model bundle the registry can publish."""
    import shutil

    from models.bundle import save_model

    if model is None:
        return None
    if folder.exists():
        shutil.rmtree(folder)
    return str(save_model(model, folder))


def lm_tables(model, data: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
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
    return {"embeddings": embeddings, "predictions": predictions}


def write_fits(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    split_id: str,
    fits: list[dict],
    lm: dict[str, pd.DataFrame] | None = None,
) -> None:
    """Record the fits (and, when the LM was trained, its embeddings and predictions) of one split."""
    for table, key in ((tables.LM_EMBEDDINGS, "embeddings"), (tables.LM_PREDICTIONS, "predictions")):
        replace_run_rows(con, table, run_id, split_id, None if lm is None else lm[key])
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


# Code whose change invalidates cached fits: the models and how they are trained and fed.
CACHE_SOURCES = ("models", "tasks/train.py", "tasks/split.py")


def source_fingerprint() -> str:
    """sha256 of the Python sources in ``CACHE_SOURCES`` (a README or flow change keeps the cache)."""
    digest = hashlib.sha256()
    for entry in CACHE_SOURCES:
        path = PROJECT_ROOT / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(PROJECT_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def split_fingerprint(con: duckdb.DuckDBPyConnection, split_id: str) -> str:
    """A digest of everything a split's models read: fold assignments with ratings and times, the training
    reviews' text, the items (and tags) tables. Order-independent (XOR of row hashes; rows are unique)."""
    queries = [
        (
            f"""SELECT count(*), bit_xor(hash(a.user_id, a.item_id, a.fold, i.rating, i.timestamp))
             FROM {tables.SPLIT_ASSIGNMENTS} a JOIN {tables.CANONICAL["interactions"]} i USING (user_id, item_id)
             WHERE a.split_id = ?""",
            [split_id],
        ),
        (f"SELECT count(*), bit_xor(hash(r)) FROM {tables.TRAIN_REVIEWS} r WHERE r.split_id = ?", [split_id]),
        *[
            (f"SELECT count(*), bit_xor(hash(t)) FROM {tables.CANONICAL[name]} t", [])
            for name in ("items", "users", "tags")
        ],
    ]
    parts = [con.execute(sql, args).fetchone() for sql, args in queries]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _fit_cache_key(context, parameters: dict) -> str:
    """Prefect cache key of :func:`fit_split`: the split's content, the configs and the model code."""
    with connect(parameters["db"], read_only=True) as con:
        data = split_fingerprint(con, parameters["split_id"])
    configs = parameters["config"].model_dump_json() + parameters["eval_config"].model_dump_json()
    return hashlib.sha256(f"{data}|{configs}|{source_fingerprint()}".encode()).hexdigest()


class FitOutputsMissing(RuntimeError):
    """A cached fit's output files were deleted or altered since the fit wrote them."""


def save_fit_outputs(result: dict, folder: Path) -> dict:
    """Write a fit's tables as Parquet files beside its bundle; return a JSON-able summary naming each file
    with its sha256 (what the cache stores: no pickle is ever written or read back)."""
    frames = {"per_user": result["per_user"]}
    if result["lm"] is not None:
        frames |= {"lm_embeddings": result["lm"]["embeddings"], "lm_predictions": result["lm"]["predictions"]}
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, frame in frames.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        files[name] = {"path": str(path), "sha256": sha256(path)}
    summary = {"files": files, **{key: result[key] for key in ("fits", "protocol", "bundle")}}
    return json.loads(json.dumps(summary, default=_plain))  # plain JSON types only: nothing to rebuild on load


def _plain(value):
    """numpy scalars and arrays as Python numbers and lists (anything else is a bug: refuse it)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"a fit summary holds a {type(value).__name__}, which is not plain JSON")


def load_fit_outputs(summary: dict) -> dict:
    """The fit's result from :func:`save_fit_outputs`' summary, every file checked against its sha256."""
    frames = {}
    for name, entry in summary["files"].items():
        path = Path(entry["path"])
        if not path.exists() or sha256(path) != entry["sha256"]:
            raise FitOutputsMissing(f"the cached fit output {path} is missing or was altered since it was written")
        frames[name] = pd.read_parquet(path)
    lm = (
        {"embeddings": frames["lm_embeddings"], "predictions": frames["lm_predictions"]}
        if "lm_embeddings" in frames
        else None
    )
    return {"per_user": frames["per_user"], "lm": lm, **{key: summary[key] for key in ("fits", "protocol", "bundle")}}


@task(cache_key_fn=_fit_cache_key, persist_result=True, result_serializer="json")
def fit_split(db: Path, split_id: str, config: TrainConfig, eval_config, work_dir: Path) -> dict:
    """Fit the configured models on one split and compute their per-user test values; the tables are written
    to ``<work_dir>/<split>/outputs`` and the task returns their summary (read them with
    :func:`load_fit_outputs`).

    Cached by content: a rerun on the same split data, configs and model code returns the stored summary
    without fitting (``refresh_cache=True`` forces a refit). The cache holds JSON only."""
    with connect(db, read_only=True) as con:  # released before the (long) fits
        protocol, data = split_protocol(con, split_id), load_split(con, split_id)
    result = fit_and_evaluate(data, protocol, split_id, config, eval_config, work_dir)
    return save_fit_outputs(result, Path(work_dir) / split_id / "outputs")


@task(cache_policy=NONE)
def record_fits(db: Path, run_id: str, split_id: str, result: dict) -> None:
    """Write one split's fits (and the LM's embeddings and predictions) under this run."""
    with connect(db) as con:
        write_fits(con, run_id, split_id, result["fits"], result["lm"])
