"""The evaluation harness: fitted models in, per-user values and aggregated rows with CIs out.

Rating metrics (RMSE, MSE, MAE) on every test pair; ranking metrics at ``k`` over the full catalogue minus
each user's training items (for the cold-item protocol: over the items without training interactions,
since ranking cold items among warm ones measures nothing else than popularity); beyond-accuracy metrics
of each user's top-``k`` list. Every value is kept per user so that CIs (bootstrap over users) and paired
tests between models (same users) can be computed, overall and per segment:

- user activity (training ratings: ≤3, 4-10, 11-25, >25), for every metric;
- item popularity of the test pair's item (head / tail / cold), for rating metrics.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import Recommender, mask_seen, top_k
from models.evaluation import EvalConfig
from models.evaluation.metrics import (
    catalogue_coverage,
    constant_scores,
    intra_list_diversity,
    item_popularity,
    ndcg_at_k,
    novelty,
    popularity_bias,
    ranking_metrics,
    squared_and_absolute_errors,
    user_blocks,
)
from models.evaluation.stats import activity_segment, bootstrap_ci, holm, paired_tests, popularity_segment
from models.progress import Progress

PER_USER_COLUMNS = ["model", "metric", "k", "user_id", "user_segment", "item_segment", "num", "den"]
# one row per pair of models and (metric, k): see significance()
TEST_COLUMNS = "metric k model_a model_b mean_diff n_users t_p wilcoxon_p t_p_holm wilcoxon_p_holm".split()


def known_before_test(train: pd.DataFrame, validation: pd.DataFrame | None) -> pd.DataFrame:
    """Everything known before the test: the training interactions (with their text) and the validation ones
    (ids, rating and time; their review text is never read), sorted by (user, item). What the model scored on
    test is fitted on or knows as history once its settings are chosen on validation, and what every model's
    candidates exclude: the field's leave-one-out rule (the test item ranked from all that came before it)."""
    if validation is None or not len(validation):
        return train
    held = validation[[c for c in validation.columns if c in train.columns]]
    both = pd.concat([train, held], ignore_index=True)
    return both.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)


def rating_rows(model: Recommender, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Per-user sums of squared and absolute errors, overall and per item segment."""
    users = test["user_id"].astype(str).to_numpy()
    items = test["item_id"].astype(str).to_numpy()
    pred = model.predict(users, items)
    lo, hi = train["rating"].min(), train["rating"].max()
    se, ae = squared_and_absolute_errors(test["rating"].to_numpy(), np.clip(pred, lo, hi))
    catalogue_counts = train["item_id"].astype(str).value_counts().reindex(model.item_ids, fill_value=0)
    segment_of = pd.Series(popularity_segment(catalogue_counts.to_numpy()), index=model.item_ids)
    item_segment = pd.Series(items).map(segment_of).fillna("cold").to_numpy()
    frame = pd.DataFrame({"user_id": users, "item_segment": item_segment, "se": se, "ae": ae, "n": 1.0})
    parts = [frame.assign(item_segment="all"), frame]
    grouped = pd.concat(parts).groupby(["user_id", "item_segment"], as_index=False)[["se", "ae", "n"]].sum()
    rows = []
    for metric, column in (("mse", "se"), ("mae", "ae")):
        rows.append(
            pd.DataFrame(
                {
                    "metric": metric,
                    "k": 0,
                    "user_id": grouped["user_id"],
                    "item_segment": grouped["item_segment"],
                    "num": grouped[column],
                    "den": grouped["n"],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def ranking_targets(model: Recommender, held_out: pd.DataFrame, *, cold_candidates: bool = False):
    """What ranking is judged against on a held-out fold: its users that have at least one held-out
    candidate item, their relevance and exclusion (training items) matrices over the candidate columns, and
    those columns (the catalogue, or only items without training interactions for the cold-item protocol).

    Returns (users, relevant, exclude, cols)."""
    cols = np.flatnonzero(model.item_counts == 0) if cold_candidates else np.arange(len(model.item_ids))
    users = np.unique(held_out["user_id"].astype(str))
    row = pd.Index(users).get_indexer(held_out["user_id"].astype(str))
    col = pd.Index(cols).get_indexer(model.item_index(held_out["item_id"].astype(str)))
    keep = col >= 0
    relevant = sp.csr_matrix((np.ones(keep.sum()), (row[keep], col[keep])), shape=(len(users), len(cols)))
    exclude = model.seen_matrix(users)[:, cols]
    candidates = relevant - relevant.multiply(exclude > 0)
    has_relevant = np.asarray((candidates > 0).sum(axis=1)).ravel() > 0
    return users[has_relevant], relevant[has_relevant], exclude[has_relevant], cols


class ValidationNDCG:
    """NDCG@k of a ranking model on validation (the users with a held-out candidate), for tuning: built once
    per fit (``targets`` is None when no validation user has a candidate), called after each configuration."""

    def __init__(self, model: Recommender, validation: pd.DataFrame | None, k: int, *, cold_candidates: bool = False):
        self.k = k
        self.targets = None
        if validation is not None and len(validation):
            users, relevant, exclude, cols = ranking_targets(model, validation, cold_candidates=cold_candidates)
            if len(users):
                self.targets = (users, relevant, exclude, cols)

    def __call__(self, model: Recommender) -> float:
        users, relevant, exclude, cols = self.targets
        return float(ndcg_at_k(model.score(users)[:, cols], relevant, exclude, self.k).mean())


def validation_summary(
    model: Recommender, train: pd.DataFrame, validation: pd.DataFrame | None, k: int, *, cold_candidates: bool = False
) -> dict[str, list[float] | float]:
    """A fitted model's validation MSE and NDCG@k as sums, ``{"mse": [Σ squared error, ratings], "ndcg": [Σ
    NDCG, users], "constant_share": share of ranked users with constant scores}`` (the tasks it serves; empty
    without a validation fold): what the pre-registered choice of the reference model reads, before any test
    value is looked at. Sums, so that the K folds of a k-fold protocol pool exactly."""
    out: dict[str, list[float] | float] = {}
    if validation is None or not len(validation):
        return out
    if "rating" in model.tasks:
        rows = rating_rows(model, train, validation)
        mse = rows[(rows["metric"] == "mse") & (rows["item_segment"] == "all")]
        out["mse"] = [float(mse["num"].sum()), float(mse["den"].sum())]
    if "ranking" in model.tasks:
        users, relevant, exclude, cols = ranking_targets(model, validation, cold_candidates=cold_candidates)
        total, constant = 0.0, []
        for rows in user_blocks(len(users), len(cols)):
            scores = model.score(users[rows])[:, cols]
            total += float(ndcg_at_k(scores, relevant[rows], exclude[rows], k).sum())
            constant.append(constant_scores(scores, exclude[rows]))
        if len(users):
            out["ndcg"] = [total, float(len(users))]
            out["constant_share"] = float(np.concatenate(constant).mean())
    return out


def ranking_rows(
    model: Recommender,
    test: pd.DataFrame,
    k: int,
    *,
    cold_candidates: bool = False,
    item_vectors: np.ndarray | None = None,
    max_users: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-user ranking and beyond-accuracy values at ``k``, plus global figures (catalogue coverage, and
    the share of users for whom the model scores every candidate the same: ``constant_share``).

    Ranking metrics are expectations over a random order of tied candidates (never the item index); the
    beyond-accuracy values describe the list the model would serve (ties by index, as in serving).

    Users are scored block by block (memory bounded at any size); with ``max_users``, a seeded sample of
    that many users is ranked (the same users for every model of the split)."""
    train_counts = model.item_counts
    users, relevant, exclude, cols = ranking_targets(model, test, cold_candidates=cold_candidates)
    if max_users is not None and len(users) > max_users:
        chosen = np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))
        users, relevant, exclude = users[chosen], relevant[chosen], exclude[chosen]
    parts, tops, constant = [], [], []
    progress = Progress(f"{model.name}: ranking the catalogue", len(users), "users")
    for rows in user_blocks(len(users), len(cols)):
        scores = model.score(users[rows])[:, cols]
        parts.append(ranking_metrics(scores, relevant[rows], exclude[rows], k))
        constant.append(constant_scores(scores, exclude[rows]))
        tops.append(cols[top_k(mask_seen(scores, exclude[rows]), min(k, len(cols)))])
        progress.advance(len(scores))
    progress.finish()
    values = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts else {}
    top = np.vstack(tops) if tops else np.zeros((0, min(k, len(cols))), dtype=np.int64)
    popularity = item_popularity(train_counts, len(model.user_ids))
    values["novelty"] = novelty(top, popularity)
    values["popularity_bias"] = popularity_bias(top, popularity)
    if item_vectors is not None:
        values["diversity"] = intra_list_diversity(top, item_vectors)
    frame = pd.concat(
        [
            pd.DataFrame({"metric": name, "k": k, "user_id": users, "item_segment": "all", "num": v, "den": 1.0})
            for name, v in values.items()
        ],
        ignore_index=True,
    )
    # share of ranked users whose candidates all score the same: 1.0 means the model does not rank here
    constant_share = float(np.concatenate(constant).mean()) if constant else float("nan")
    return frame, {"coverage": catalogue_coverage(top, len(cols)), "constant_share": constant_share}


def per_user_values(
    model: Recommender,
    label: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    config: EvalConfig,
    *,
    cold_candidates: bool = False,
    item_vectors: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """All of a model's per-user values on ``test`` (columns ``PER_USER_COLUMNS``) and its global figures."""
    parts, extras = [], {}
    if "rating" in model.tasks:
        parts.append(rating_rows(model, train, test))
    if "ranking" in model.tasks:
        frame, extras = ranking_rows(
            model,
            test,
            config.k,
            cold_candidates=cold_candidates,
            item_vectors=item_vectors,
            max_users=config.ranking_users,
            seed=config.seed,
        )
        parts.append(frame)
    values = pd.concat(parts, ignore_index=True)
    activity = train["user_id"].astype(str).value_counts()
    values["user_segment"] = activity_segment(values["user_id"].map(activity).fillna(0).to_numpy())
    values["model"] = label
    return values[PER_USER_COLUMNS], extras


def aggregate(values: pd.DataFrame, config: EvalConfig) -> pd.DataFrame:
    """One row per (model, metric, k, segment): value = Σnum/Σden with its 95% bootstrap CI over users.

    Segments: ``all``, ``users:<bucket>`` and, for rating metrics, ``items:<head|tail|cold>``. RMSE rows are
    derived from MSE sums (square root of the ratio and of its CI bounds).
    """
    rows = []
    overall_items = values[values["item_segment"] == "all"]
    groups = [("all", overall_items)]
    groups += [(f"users:{s}", g) for s, g in overall_items.groupby("user_segment")]
    groups += [(f"items:{s}", g) for s, g in values[values["item_segment"] != "all"].groupby("item_segment")]
    groups = [(segment, frame.groupby(["model", "metric", "k"])) for segment, frame in groups]
    progress = Progress("bootstrap CIs", sum(grouped.ngroups for _, grouped in groups), "CIs")
    for segment, grouped in groups:
        for (model, metric, k), g in grouped:
            progress.advance()
            num, den = g["num"].to_numpy(), g["den"].to_numpy()
            keep = np.isfinite(num)
            value = float(num[keep].sum() / den[keep].sum()) if keep.any() else float("nan")
            lo, hi = bootstrap_ci(num, den, n_boot=config.n_boot, seed=config.seed)
            rows.append((model, metric, int(k), segment, value, lo, hi, int(keep.sum())))
            if metric == "mse":
                rows.append(
                    (
                        model,
                        "rmse",
                        int(k),
                        segment,
                        float(np.sqrt(value)),
                        float(np.sqrt(lo)),
                        float(np.sqrt(hi)),
                        int(keep.sum()),
                    )
                )
    progress.finish()
    return pd.DataFrame(rows, columns=["model", "metric", "k", "segment", "value", "ci_low", "ci_high", "n_users"])


def significance(values: pd.DataFrame) -> pd.DataFrame:
    """Paired tests between every pair of models on per-user values (segment ``all``), Holm-corrected per
    (metric, k) across the pairs compared. Rating metrics compare per-user mean errors."""
    overall = values[values["item_segment"] == "all"].assign(value=lambda f: f["num"] / f["den"])
    rows = []
    grouped = overall.groupby(["metric", "k"])
    progress = Progress("paired tests", grouped.ngroups, "metrics")
    for (metric, k), g in grouped:
        progress.advance()
        table = g.pivot_table(index="user_id", columns="model", values="value", aggfunc="first")
        pairs = list(itertools.combinations(sorted(table.columns), 2))
        results = [paired_tests(table[a].to_numpy(), table[b].to_numpy()) for a, b in pairs]
        if not results:
            continue
        t_holm = holm([r["t_p"] for r in results])
        w_holm = holm([r["wilcoxon_p"] for r in results])
        for (a, b), r, th, wh in zip(pairs, results, t_holm, w_holm, strict=True):
            rows.append((metric, int(k), a, b, r["mean_diff"], r["n"], r["t_p"], r["wilcoxon_p"], float(th), float(wh)))
    progress.finish()
    return pd.DataFrame(rows, columns=TEST_COLUMNS)
