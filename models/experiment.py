"""The experiment on one split: build every configured model from the registry, fit it on the training fold
(tuning on validation), and compute its per-user test values.

Pure: DataFrames in, DataFrames and fitted models out. Loading the split, caching fits and persisting their
outputs are the train stage's tasks (``tasks/train.py``). Models receive the training fold *with* its review
text and the validation/test folds *without* any text, so no model can read a held-out review.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.base import Recommender
from models.evaluation.harness import EvalConfig, per_user_values, validation_summary
from models.progress import duration
from models.recommenders.features import item_vectors, metadata_tokens, review_terms
from models.registry import REGISTRY, BuildContext, TrainConfig, build_model

LOG = logging.getLogger("reclab.experiment")


@dataclass
class SplitFit:
    """One split's fitted models and their test values.

    ``per_user``: every model's per-user values (``models.evaluation.harness.PER_USER_COLUMNS``); ``fits``:
    per model, its chosen hyperparameters, fit and evaluation seconds and global figures (``extras``, with
    ``peak_memory_gib``: the process's peak resident memory during the fit, the LM's trainer process
    included, and for traditional models ``validation``: their validation MSE / NDCG sums, from which the
    reference is chosen); ``models``: the
    fitted models by name (the fusion holds the others as components)."""

    protocol: str
    per_user: pd.DataFrame
    fits: list[dict]
    models: dict[str, Recommender]


def fit_split_models(
    data: dict[str, pd.DataFrame],
    protocol: str,
    split_id: str,
    config: TrainConfig,
    eval_config: EvalConfig,
    work_dir: Path,
) -> SplitFit:
    """Fit every model of ``config`` on one split's ``data`` (``train`` with text, ``validation`` and ``test``
    without, ``items``, ``users``) in registry order, the fusion last, and evaluate each on ``test``.
    ``work_dir``: where models write files (the LM's trainer run)."""
    vectors = diversity_vectors(data, config.seed)
    cold = protocol == "cold_items"
    parts, fits, fitted = [], [], {}
    order = sorted(config.models, key=lambda name: REGISTRY[name].family == "fusion")
    for n, name in enumerate(order, start=1):
        context = BuildContext(protocol, Path(work_dir), eval_config.k, components=dict(fitted))
        model = build_model(name, config, context)
        LOG.info(f"{split_id}: fitting {name} ({n} of {len(order)})")
        reset_peak_memory()
        start = time.perf_counter()
        model.fit(data["train"], data["validation"], items=data["items"], users=data["users"])
        done = time.perf_counter()
        peak = peak_memory_gib()
        values, extras = per_user_values(
            model,
            name,
            data["train"],
            data["test"],
            eval_config,
            cold_candidates=cold,
            item_vectors=vectors.reindex(model.item_ids).fillna(0.0).to_numpy(),
        )
        if REGISTRY[name].traditional:  # the reference is chosen among these, on validation
            extras["validation"] = validation_summary(
                model, data["train"], data["validation"], eval_config.k, cold_candidates=cold
            )
        parts.append(values)
        fitted[name] = model
        evaluated = time.perf_counter() - done
        LOG.info(f"{split_id}: {name} fitted in {duration(done - start)}, evaluated in {duration(evaluated)}")
        child = (getattr(model, "metrics_", None) or {}).get("peak_rss_gib")  # the LM trains in its own process
        extras["peak_memory_gib"] = round(max(peak, child or 0.0), 3) if peak is not None else child
        fits.append(
            {
                "model": name,
                "params": fitted_params(model),
                "fit_seconds": done - start,
                "eval_seconds": evaluated,
                "extras": extras,
            }
        )
    return SplitFit(protocol, pd.concat(parts, ignore_index=True), fits, fitted)


def reset_peak_memory() -> None:
    """Reset this process's peak resident memory (Linux: VmHWM), so that the next reading is one fit's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_gib() -> float | None:
    """This process's peak resident memory since the last reset (Linux), None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        return None
    return None


def diversity_vectors(data: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Item vectors (metadata tokens and training-review terms, TF-IDF + SVD) indexed by item id: what
    intra-list diversity measures distance with, the same for every model."""
    tokens = metadata_tokens(data["items"])
    for key, terms in review_terms(data["train"], "item_id").items():
        tokens.setdefault(key, []).extend(terms)
    catalogue = np.sort(np.union1d(data["train"]["item_id"].astype(str).unique(), data["items"]["item_id"].astype(str)))
    return pd.DataFrame(item_vectors(catalogue, tokens, seed=seed), index=catalogue)


def fitted_params(model: Recommender) -> dict:
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
