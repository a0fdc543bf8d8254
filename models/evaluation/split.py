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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation import PROTOCOLS, TEST, TRAIN, VALIDATION, SplitConfig


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


def split(frame: pd.DataFrame, protocol: str, config: SplitConfig) -> pd.Series:
    """Fold labels for ``protocol`` under ``config`` (rows removed by the k-core filter get NaN)."""
    keep = kcore_filter(frame, config.kcore or 0)
    sub = frame[keep]
    if protocol == "random":
        folds = random_split(sub, config.seed, config.fractions)
    elif protocol == "temporal":
        folds = temporal_split(sub, config.seed, config.min_user_interactions)
    elif protocol == "cold_items":
        folds = cold_item_split(sub, config.seed, config.cold_item_fraction)
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; known: {PROTOCOLS}")
    return folds.reindex(frame.index)
