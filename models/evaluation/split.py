"""Evaluation protocols: seeded, reproducible splits of interactions into train / validation / test.

Pure functions over a DataFrame with ``user_id``, ``item_id`` (and ``timestamp`` for the temporal
protocol). Each returns one fold label per input row, aligned with the input index. Results depend only
on the rows' content and the seed, never on the input's row order.

When to use which:

- ``random``: seeded 80/10/10 over interactions, the protocol of the review-based rating-prediction
  literature (RMSE/MAE). Validation/test users and items may be unseen in training.
- ``temporal``: per user, the last interaction is test and the one before is validation (ties in time
  broken by a seeded shuffle). For top-K ranking. Users with fewer than ``min_user_interactions``
  interactions stay entirely in training (they cannot give up two).
- ``cold_items``: a seeded fraction of items is held out with *all* their interactions, half of those items
  for validation and half for test. For cold-start evaluation: training never sees them.
- ``kfold``: K-fold cross-validation, user-stratified: each user's ratings are dealt in a seeded order to the K
  test folds, from a seeded starting fold, so every rating is tested exactly once and every user with at least
  K ratings is in every test fold. Fold f's split holds test fold f out; a seeded share of the rest becomes its
  validation set (tuning, fusion weights, the choice of the reference model), the remainder its training set.
  Ten times the random split's test ratings per seed, for the price of K fits: the protocol whose verdicts can
  see the smallest differences (the K folds are judged together, each user once).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from models.evaluation import (  # noqa: F401
    DEFAULT_PROTOCOLS,
    PROTOCOLS,
    TEST,
    TRAIN,
    VALIDATION,
    SplitConfig,
    with_fraction,
)


def planned_folds(splits: pd.DataFrame) -> dict[str, int]:
    """K of each k-fold unit (``kfold_s0``: 5) from its splits' stored parameters (``splits``: ``split_id`` and
    ``parameters``, the ``SplitConfig`` as JSON text or a dict, as the ``splits`` table holds them)."""
    from models.evaluation import judged_unit

    planned: dict[str, int] = {}
    if splits.empty or "parameters" not in splits:
        return planned
    for split_id, parameters in zip(splits["split_id"], splits["parameters"], strict=True):
        unit = judged_unit(split_id)
        if unit == split_id:  # not a fold of a k-fold unit
            continue
        folds = (json.loads(parameters) if isinstance(parameters, str) else parameters or {}).get("folds", 0)
        planned[unit] = max(planned.get(unit, 0), int(folds or 0))
    return planned


def _canonical_order(frame: pd.DataFrame) -> np.ndarray:
    """Positions of ``frame`` rows sorted by (user_id, item_id): makes results independent of input order."""
    return np.lexsort((frame["item_id"].to_numpy(dtype=str), frame["user_id"].to_numpy(dtype=str)))


def kcore_filter(frame: pd.DataFrame, k: int) -> pd.Series:
    """Boolean mask of the rows that survive iterative k-core filtering (users and items with >= k)."""
    keep = pd.Series(True, index=frame.index)
    if not k:
        return keep
    while True:
        sub = frame[keep]
        users = sub["user_id"].map(sub["user_id"].value_counts())
        items = sub["item_id"].map(sub["item_id"].value_counts())
        drop = (users < k) | (items < k)
        if not drop.any():
            return keep
        keep[drop[drop].index] = False


def random_split(frame: pd.DataFrame, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> pd.Series:
    """Seeded random split of interactions; fold sizes are floor(n * train), floor(n * validation), rest."""
    n = len(frame)
    order = _canonical_order(frame)
    shuffled = order[np.random.default_rng(seed).permutation(n)]
    n_train = int(np.floor(n * fractions[0]))
    n_val = int(np.floor(n * fractions[1]))
    labels = np.empty(n, dtype=object)
    labels[shuffled[:n_train]] = TRAIN
    labels[shuffled[n_train : n_train + n_val]] = VALIDATION
    labels[shuffled[n_train + n_val :]] = TEST
    return pd.Series(labels, index=frame.index, name="fold")


def temporal_split(frame: pd.DataFrame, seed: int, min_user_interactions: int = 3) -> pd.Series:
    """Leave-last-out per user: latest interaction test, the one before validation, the rest train."""
    if frame["timestamp"].isna().any():
        raise ValueError("the temporal split needs a timestamp on every interaction; this dataset has none")
    n = len(frame)
    order = _canonical_order(frame)
    tiebreak = np.empty(n)
    tiebreak[order] = np.random.default_rng(seed).random(n)
    work = pd.DataFrame(
        {"user_id": frame["user_id"].to_numpy(), "timestamp": frame["timestamp"].to_numpy(), "tie": tiebreak}
    )
    work = work.sort_values(["user_id", "timestamp", "tie"], kind="stable")
    from_end = work.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    size = work.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    eligible = size >= min_user_interactions
    labels = np.where(eligible & (from_end == 0), TEST, np.where(eligible & (from_end == 1), VALIDATION, TRAIN))
    out = np.empty(n, dtype=object)
    out[work.index.to_numpy()] = labels
    return pd.Series(out, index=frame.index, name="fold")


def cold_item_split(frame: pd.DataFrame, seed: int, fraction: float = 0.1) -> pd.Series:
    """Hold out ``fraction`` of items with all their interactions: first half validation, second test."""
    items = np.sort(frame["item_id"].astype(str).unique())
    n_cold = max(2, int(round(len(items) * fraction))) if len(items) >= 4 else 0
    held = np.random.default_rng(seed).permutation(items)[:n_cold]
    fold = {item: VALIDATION for item in held[: n_cold // 2]} | {item: TEST for item in held[n_cold // 2 :]}
    return frame["item_id"].astype(str).map(fold).fillna(TRAIN).rename("fold")


def kfold_assignment(frame: pd.DataFrame, seed: int, folds: int) -> np.ndarray:
    """The test fold (0 .. folds-1) of every row: each user's rows in a seeded random order, dealt round-robin
    from a seeded starting fold per user. Every row gets exactly one fold; a user's rows spread over
    min(n_user, folds) folds, as evenly as possible."""
    n = len(frame)
    order = _canonical_order(frame)
    rng = np.random.default_rng([seed, folds])
    key = np.empty(n)
    key[order] = rng.random(n)
    users = frame["user_id"].astype(str).to_numpy()
    work = pd.DataFrame({"user_id": users, "key": key}).sort_values(["user_id", "key"], kind="stable")
    position = work.groupby("user_id", sort=False).cumcount().to_numpy()
    unique = np.sort(pd.unique(users))
    start = pd.Series(rng.integers(0, folds, len(unique)), index=unique)
    out = np.empty(n, dtype=np.int64)
    out[work.index.to_numpy()] = (position + start.reindex(work["user_id"]).to_numpy()) % folds  # work: by position
    return out


def kfold_split(frame: pd.DataFrame, seed: int, folds: int, fold: int, validation: float = 0.125) -> pd.Series:
    """Fold ``fold`` (1-based) of the K-fold protocol: its test fold, a seeded ``validation`` share of the
    remaining rows as validation, the rest training."""
    if not 1 <= fold <= folds:
        raise ValueError(f"fold {fold} is not one of 1..{folds}")
    test = kfold_assignment(frame, seed, folds) == fold - 1
    rest = np.flatnonzero(~test)
    order = _canonical_order(frame)  # canonical positions, so the draw ignores the input's row order
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame))
    rest = rest[np.argsort(rank[rest])]
    n_val = int(np.floor(len(rest) * validation))
    chosen = rest[np.random.default_rng([seed, folds, fold]).permutation(len(rest))[:n_val]]
    labels = np.full(len(frame), TRAIN, dtype=object)
    labels[test] = TEST
    labels[chosen] = VALIDATION
    return pd.Series(labels, index=frame.index, name="fold")


def split_all(frame: pd.DataFrame, protocol: str, config: SplitConfig) -> dict[str, pd.Series]:
    """Every split ``protocol`` makes under ``config`` (one; K for kfold), by split id, and each of them reduced
    to every fraction of ``config.train_fractions`` below 1 (:func:`reduce_training`)."""
    if protocol != "kfold":
        made = {config.split_id(protocol): split(frame, protocol, config)}
    else:
        keep = kcore_filter(frame, config.kcore or 0)
        sub = frame[keep]
        made = {
            split_id: kfold_split(sub, config.seed, config.folds, fold, config.kfold_validation).reindex(frame.index)
            for fold, split_id in enumerate(config.split_ids(protocol), start=1)
        }
    out = {}
    for fraction in sorted(set(config.train_fractions), reverse=True):
        for split_id, folds in made.items():
            reduced = folds if fraction >= 1.0 else reduce_training(frame, folds, fraction, config.seed)
            out[with_fraction(split_id, fraction)] = reduced
    return out


def reduce_training(frame: pd.DataFrame, folds: pd.Series, fraction: float, seed: int) -> pd.Series:
    """``folds`` with only ``fraction`` of each user's training rows kept (the rest NaN: in no fold), the
    validation and test rows untouched. Each user keeps ceil(fraction × n) of their n training rows, at least
    one, those first in a seeded random order of the rows (the same order for every fraction: a smaller
    fraction's rows are inside a larger one's)."""
    order = _canonical_order(frame)
    key = np.empty(len(frame))
    key[order] = np.random.default_rng([seed, 7919]).random(len(frame))
    train = (folds == TRAIN).to_numpy()
    work = pd.DataFrame({"user_id": frame["user_id"].astype(str).to_numpy()[train], "key": key[train]})
    rank = work.groupby("user_id")["key"].rank(method="first").to_numpy()
    size = work.groupby("user_id")["key"].transform("size").to_numpy()
    keep = rank <= np.maximum(1, np.ceil(fraction * size - 1e-9))
    out = folds.copy()
    out.iloc[np.flatnonzero(train)[~keep]] = np.nan
    return out


def split(frame: pd.DataFrame, protocol: str, config: SplitConfig) -> pd.Series:
    """Fold labels for a single-split ``protocol`` under ``config`` (rows removed by the k-core filter get NaN);
    kfold's K splits come from :func:`split_all`."""
    keep = kcore_filter(frame, config.kcore or 0)
    sub = frame[keep]
    if protocol == "random":
        folds = random_split(sub, config.seed, config.fractions)
    elif protocol == "temporal":
        folds = temporal_split(sub, config.seed, config.min_user_interactions)
    elif protocol == "cold_items":
        folds = cold_item_split(sub, config.seed, config.cold_item_fraction)
    elif protocol == "kfold":
        raise ValueError("kfold makes K splits: use split_all(frame, 'kfold', config)")
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; known: {PROTOCOLS}")
    return folds.reindex(frame.index)
