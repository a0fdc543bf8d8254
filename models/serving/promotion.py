"""The promotion gate: does a retrained challenger replace the champion? (pure: no Prefect, no DuckDB)

Both models are evaluated on the same test users of the challenger's split (the champion scores them
through its bundle, as it would in serving). The challenger is promoted only when

- its gain on ``metric`` (at ``k`` for ranking metrics) is positive and significant: a paired test over users
  (Wilcoxon signed-rank by default, or the paired t-test) with p < ``alpha``; and
- no guard metric regresses by more than ``tolerance`` (relative) against the champion.

Every number the decision used is returned with it, to be stored and shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation.stats import paired_tests
from models.serving import PromotionConfig

LOWER_IS_BETTER = {"rmse", "mse", "mae"}


def _per_user(values: pd.DataFrame, model: str, metric: str, k: int) -> tuple[pd.Series, pd.Series]:
    source = "mse" if metric == "rmse" else metric
    rows = values[(values["model"] == model) & (values["metric"] == source) & (values["item_segment"] == "all")]
    if source not in LOWER_IS_BETTER:
        rows = rows[rows["k"] == k]
    rows = rows.set_index("user_id")
    return rows["num"], rows["den"]


def _aggregate(num: pd.Series, den: pd.Series, metric: str) -> float:
    value = float(num.sum() / den.sum()) if den.sum() else float("nan")
    return float(np.sqrt(value)) if metric == "rmse" else value


def decide(
    values: pd.DataFrame,
    config: PromotionConfig,
    k: int,
    challenger: str = "challenger",
    champion: str = "champion",
) -> dict:
    """The decision on per-user values (``models.evaluation.PER_USER_COLUMNS``) of both models on the same
    test set. Returns {"promote", "reason", "metric", values, p-value, users, "guards": {...}}."""
    out: dict = {
        "metric": config.metric if config.metric in LOWER_IS_BETTER else f"{config.metric}@{k}",
        "test": config.test,
        "alpha": config.alpha,
        "tolerance": config.tolerance,
    }
    if config.mode != "gate":
        return {**out, "promote": config.mode == "always", "reason": f"promotion mode {config.mode!r}"}
    a_num, a_den = _per_user(values, challenger, config.metric, k)
    b_num, b_den = _per_user(values, champion, config.metric, k)
    if a_num.empty or b_num.empty:
        return {**out, "promote": False, "reason": f"{out['metric']} is missing for one of the models"}
    users = a_num.index.intersection(b_num.index)
    a, b = (a_num[users] / a_den[users]).to_numpy(), (b_num[users] / b_den[users]).to_numpy()
    tests = paired_tests(a, b)
    p = tests["wilcoxon_p" if config.test == "wilcoxon" else "t_p"]
    sign = -1.0 if config.metric in LOWER_IS_BETTER else 1.0
    challenger_value = _aggregate(a_num[users], a_den[users], config.metric)
    champion_value = _aggregate(b_num[users], b_den[users], config.metric)
    gain = sign * (challenger_value - champion_value)
    out.update(
        {"challenger": challenger_value, "champion": champion_value, "gain": gain, "p_value": p, "users": tests["n"]}
    )
    guards = {}
    for guard in config.guards:
        g_a, g_b = _per_user(values, challenger, guard, k), _per_user(values, champion, guard, k)
        if g_a[0].empty or g_b[0].empty:
            continue
        new, old = _aggregate(*g_a, guard), _aggregate(*g_b, guard)
        worse = (new - old) if guard in LOWER_IS_BETTER else (old - new)
        relative = worse / abs(old) if old else 0.0
        guards[guard] = {
            "challenger": new,
            "champion": old,
            "relative_regression": relative,
            "ok": relative <= config.tolerance,
        }
    out["guards"] = guards
    broken = [g for g, r in guards.items() if not r["ok"]]
    if gain <= 0:
        reason = f"challenger is not better on {out['metric']} ({challenger_value:.4f} vs {champion_value:.4f})"
    elif p >= config.alpha:
        reason = f"gain on {out['metric']} is not significant ({config.test} p = {p:.3g} ≥ {config.alpha})"
    elif broken:
        reason = "guard metric regressed beyond the tolerance: " + ", ".join(
            f"{g} {guards[g]['relative_regression']:+.1%}" for g in broken
        )
    else:
        reason = f"significant gain on {out['metric']} ({challenger_value:.4f} vs {champion_value:.4f}, p = {p:.3g})"
        return {**out, "promote": True, "reason": reason}
    return {**out, "promote": False, "reason": reason}
