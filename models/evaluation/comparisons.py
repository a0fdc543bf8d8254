"""Paired differences: what the report is allowed to claim.

Each model is compared with the best traditional model (the reference), and the fusion with each of its
components, on the same users. A comparison row holds the difference of the two aggregate values with a 95%
bootstrap CI (users resampled jointly: one draw of user counts serves both models), the paired t-test (means)
and Wilcoxon signed-rank test (per-user ranks: where most users lie) on per-user values, both Holm-corrected
across every comparison of the same (metric, k, segment), and the share of users each side serves better.

The words follow the numbers (:func:`verdict`):

- "better" / "worse" only when the Holm-corrected t-test is significant *and* the CI excludes zero;
- otherwise "no detectable difference", quoting the difference and its CI;
- a segment with fewer than ``min_users`` users gets no test at all ("too few users");
- when the two tests disagree (one significant, or both significant in opposite directions) the row is
  flagged: the mean and the typical user move differently, and the report says so in words.

The reference is the traditional model with the best test value on the split (segment ``all``): choosing it
on test favours the traditional side, so a "better" for the LM is conservative. Models that give every
candidate the same score ("no ranking") are never a ranking reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation.stats import holm, paired_bootstrap_ci, paired_tests

LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "popularity_bias"})
# the metrics judged in the verdict and the comparisons (beyond-accuracy metrics are described, not judged)
JUDGED = ("mse", "mae", "ndcg", "recall", "precision", "hit_rate", "map", "mrr", "auc")
SEGMENTED = ("mse", "ndcg")  # the metrics whose segments get comparisons ("for whom")
BEST_TRADITIONAL, COMPONENT = "vs_best_traditional", "vs_component"
BETTER, WORSE, SAME, TOO_FEW = "better", "worse", "no detectable difference", "too few users"

DIFFERENCE_COLUMNS = [
    "metric",
    "k",
    "segment",
    "model",
    "reference",
    "kind",
    "n_users",
    "value",
    "reference_value",
    "diff",
    "ci_low",
    "ci_high",
    "mean_user_diff",
    "median_user_diff",
    "share_better",
    "share_worse",
    "t_p",
    "wilcoxon_p",
    "t_p_holm",
    "wilcoxon_p_holm",
    "verdict",
    "tests_disagree",
]


def ranks_nothing(extras: dict | None) -> bool:
    """Whether a model's fit record (``model_fits.extras``) says it scored every candidate the same for every
    ranked user of the split (``constant_share`` 1: its ranking figures are chance, it is never a reference)."""
    return (extras or {}).get("constant_share", 0.0) >= 1.0


def best_reference(results: pd.DataFrame, candidates, no_ranking=()) -> dict[tuple[str, int], str]:
    """(metric, k) -> the candidate with the best overall value (segment ``all``); for ranking metrics
    (k > 0) models in ``no_ranking`` are skipped."""
    overall = results[(results["segment"] == "all") & results["model"].isin(list(candidates))].dropna(subset=["value"])
    out = {}
    for (metric, k), g in overall.groupby(["metric", "k"]):
        if k > 0:
            g = g[~g["model"].isin(list(no_ranking))]
        if not g.empty:
            out[(metric, int(k))] = g.sort_values(["value", "model"], ascending=[metric in LOWER_IS_BETTER, True]).iloc[
                0
            ]["model"]
    return out


def comparisons(
    results: pd.DataFrame,
    *,
    traditional,
    fusion: str | None,
    components: dict[str, list[str]],
    no_ranking=(),
) -> list[tuple[str, int, str, str, str]]:
    """The pairs to compare: (metric, k, model, reference, kind) for every judged metric.

    ``components``: task ("rating"/"ranking") -> the models the fusion blends for it."""
    out = []
    for (metric, k), reference in best_reference(results, traditional, no_ranking).items():
        if metric not in JUDGED:
            continue
        models = set(results.loc[(results["metric"] == metric) & (results["k"] == k), "model"])
        for model in sorted(models - {reference}):
            if not (k > 0 and model in no_ranking):
                out.append((metric, k, model, reference, BEST_TRADITIONAL))
        task = "ranking" if k > 0 else "rating"
        if fusion in models:
            for component in components.get(task, []):
                if component in models and component != reference:
                    out.append((metric, k, fusion, component, COMPONENT))
    return out


def paired_differences(
    values: pd.DataFrame,
    pairs: list[tuple[str, int, str, str, str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_users: int = 20,
) -> pd.DataFrame:
    """One row per pair and segment (``all``, user activity buckets, and item popularity for rating metrics;
    segments for :data:`SEGMENTED` metrics only), columns :data:`DIFFERENCE_COLUMNS`."""
    rows = []
    for metric, k, model, reference, kind in pairs:
        frame = values[(values["metric"] == metric) & (values["k"] == k) & values["model"].isin([model, reference])]
        for segment, part in _segments(frame, metric):
            rows.append(_compare(part, metric, k, segment, model, reference, kind, n_boot, seed, min_users))
    out = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS[:-4])
    if out.empty:
        return pd.DataFrame(columns=DIFFERENCE_COLUMNS)
    out["t_p_holm"] = np.nan
    out["wilcoxon_p_holm"] = np.nan
    tested = out["t_p"].notna()
    for _, idx in out[tested].groupby(["metric", "k", "segment"]).groups.items():
        out.loc[idx, "t_p_holm"] = holm(out.loc[idx, "t_p"].to_numpy())
        out.loc[idx, "wilcoxon_p_holm"] = holm(out.loc[idx, "wilcoxon_p"].to_numpy())
    judged = [verdict(row, alpha) for row in out.itertuples()]
    out["verdict"] = [v for v, _ in judged]
    out["tests_disagree"] = [d for _, d in judged]
    return out[DIFFERENCE_COLUMNS]


def _segments(frame: pd.DataFrame, metric: str):
    overall = frame[frame["item_segment"] == "all"]
    yield "all", overall
    if metric in SEGMENTED:
        for segment, part in overall.groupby("user_segment"):
            yield f"users:{segment}", part
        for segment, part in frame[frame["item_segment"] != "all"].groupby("item_segment"):
            yield f"items:{segment}", part


def _compare(part, metric, k, segment, model, reference, kind, n_boot, seed, min_users) -> tuple:
    table = part.pivot_table(index="user_id", columns="model", values=["num", "den"], aggfunc="sum").dropna()
    if model not in table["num"] or reference not in table["num"]:
        table = table.iloc[0:0]
    n = len(table)
    if n == 0:
        return (metric, k, segment, model, reference, kind, 0, *[np.nan] * 11)
    num_a, den_a = table["num"][model].to_numpy(), table["den"][model].to_numpy()
    num_b, den_b = table["num"][reference].to_numpy(), table["den"][reference].to_numpy()
    value, ref_value = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    per_user = num_a / den_a - num_b / den_b
    lower = metric in LOWER_IS_BETTER
    better_share = float(np.mean(per_user < 0 if lower else per_user > 0))
    worse_share = float(np.mean(per_user > 0 if lower else per_user < 0))
    head = (metric, k, segment, model, reference, kind, n, value, ref_value, value - ref_value)
    shares = (float(per_user.mean()), float(np.median(per_user)), better_share, worse_share)
    if n < min_users:
        return (*head, np.nan, np.nan, *shares, np.nan, np.nan)
    lo, hi = paired_bootstrap_ci(num_a, den_a, num_b, den_b, n_boot=n_boot, seed=seed)
    tests = paired_tests(num_a / den_a, num_b / den_b)
    return (*head, lo, hi, *shares, tests["t_p"], tests["wilcoxon_p"])


def verdict(row, alpha: float = 0.05) -> tuple[str, bool]:
    """(words, tests disagree) for one comparison row (any object with the row's fields as attributes)."""
    if row.t_p_holm is None or not np.isfinite(row.t_p_holm):
        return TOO_FEW if row.n_users > 0 else SAME, False
    lower = row.metric in LOWER_IS_BETTER
    improves = (row.diff < 0) if lower else (row.diff > 0)
    excludes_zero = row.ci_low > 0 or row.ci_high < 0
    t_significant = row.t_p_holm < alpha and excludes_zero
    w_significant = row.wilcoxon_p_holm < alpha
    typical_improves = row.share_better > row.share_worse
    disagree = (t_significant != w_significant) or (t_significant and w_significant and improves != typical_improves)
    if not t_significant:
        return SAME, bool(disagree)
    return (BETTER if improves else WORSE), bool(disagree)
