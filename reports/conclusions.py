"""The experiment's conclusions, generated from the evaluation tables (never hand-written).

Every sentence quotes the numbers it rests on, and every number is in the report's tables: the metric
values with their 95% CIs (``eval_results``), the Holm-corrected paired tests (``eval_tests``) and the fit
times (``model_fits``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import registry

TRADITIONAL = registry.TRADITIONAL
CONTENDERS = registry.CONTENDERS  # the traditional models but the floor (the global mean)
LANGUAGE = (*registry.LANGUAGE, registry.FUSION)  # the transformer and what fuses it
LOWER_IS_BETTER = {"rmse", "mse", "mae", "popularity_bias"}
HEADLINE = ("rmse", "mse", "mae", "ndcg", "recall", "hit_rate", "map", "mrr", "auc")
SEGMENTS_OF_INTEREST = ("users:≤3", "items:tail", "items:cold")
ALPHA = 0.05
MIN_SEGMENT_USERS = 10  # smaller segments get no sentence (their CIs say little); they stay in the tables


def metric_label(metric: str, k: int) -> str:
    return f"{metric.upper()}@{k}" if k and metric != "auc" else metric.upper()


def better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def relative(metric: str, value: float, reference: float) -> str:
    """'3.1% lower' / '12.0% higher' (direction in words, no sign)."""
    if reference == 0 or not np.isfinite(reference):
        return "n/a"
    change = (value - reference) / abs(reference) * 100
    return f"{abs(change):.1f}% {'lower' if change < 0 else 'higher'}"


def paired_test(tests: pd.DataFrame, split_id: str, metric: str, k: int, a: str, b: str) -> pd.Series | None:
    """The paired-test row of models a and b (either order) on one split and metric, or None."""
    rows = tests[
        (tests["split_id"] == split_id)
        & (tests["metric"] == metric)
        & (tests["k"] == k)
        & (((tests["model_a"] == a) & (tests["model_b"] == b)) | ((tests["model_a"] == b) & (tests["model_b"] == a)))
    ]
    return None if rows.empty else rows.iloc[0]


def significance_phrase(test: pd.Series | None) -> str:
    if test is None:
        return "no paired test available"
    p = float(test["t_p_holm"])
    verdict = "significant" if p < ALPHA else "not significant"
    return f"paired t-test p = {p:.3g} after Holm correction ({verdict} at {ALPHA:g}; Wilcoxon p = {float(test['wilcoxon_p_holm']):.3g})"


def fmt(row: pd.Series) -> str:
    return f"{row['value']:.4f} [{row['ci_low']:.4f}, {row['ci_high']:.4f}]"


def split_conclusions(results: pd.DataFrame, tests: pd.DataFrame, split_id: str) -> list[str]:
    """Who wins each headline metric on one split, by how much against the best traditional model, and
    whether it is significant."""
    overall = results[(results["split_id"] == split_id) & (results["segment"] == "all")]
    out = []
    groups = sorted(
        overall.groupby(["metric", "k"]), key=lambda kv: HEADLINE.index(kv[0][0]) if kv[0][0] in HEADLINE else 99
    )
    for (metric, k), g in groups:
        if metric not in HEADLINE or metric == "rmse":  # RMSE tells the same as MSE
            continue
        g = g.dropna(subset=["value"])
        if g.empty:
            continue
        ascending = metric in LOWER_IS_BETTER
        ranked = g.sort_values("value", ascending=ascending)
        winner = ranked.iloc[0]
        traditional = ranked[ranked["model"].isin(CONTENDERS)]
        label = metric_label(metric, int(k))
        sentence = f"{label}: {winner['model']} is best with {fmt(winner)}"
        if not traditional.empty and winner["model"] not in TRADITIONAL:
            base = traditional.iloc[0]
            test = paired_test(tests, split_id, metric, int(k), winner["model"], base["model"])
            sentence += (
                f", {relative(metric, winner['value'], base['value'])} than the best traditional model "
                f"{base['model']} ({fmt(base)}); {significance_phrase(test)}."
            )
        elif len(ranked) > 1:
            runner = ranked.iloc[1]
            test = paired_test(tests, split_id, metric, int(k), winner["model"], runner["model"])
            sentence += (
                f"; a traditional model wins. Runner-up {runner['model']} ({fmt(runner)}); {significance_phrase(test)}."
            )
        else:
            sentence += "."
        out.append(sentence)
    return out


def segment_conclusions(results: pd.DataFrame, split_id: str) -> list[str]:
    """Where the language-model side helps or not: its segment values against the best traditional model's."""
    out = []
    here = results[results["split_id"] == split_id]
    for metric, k in (("mse", 0), ("ndcg", ranking_k(here))):
        if k is None:
            continue
        for segment in SEGMENTS_OF_INTEREST:
            seg = here[(here["metric"] == metric) & (here["k"] == k) & (here["segment"] == segment)].dropna(
                subset=["value"]
            )
            trad = seg[seg["model"].isin(CONTENDERS)]
            if trad.empty or seg["n_users"].max() < MIN_SEGMENT_USERS:
                continue
            base = trad.sort_values("value", ascending=metric in LOWER_IS_BETTER).iloc[0]
            for model in LANGUAGE:
                row = seg[seg["model"] == model]
                if row.empty:
                    continue
                row = row.iloc[0]
                verb = "helps" if better(metric, row["value"], base["value"]) else "does not help"
                overlap = row["ci_low"] <= base["ci_high"] and base["ci_low"] <= row["ci_high"]
                out.append(
                    f"{segment} ({int(row['n_users'])} users), {metric_label(metric, k)}: {model} {verb} "
                    f"({fmt(row)} vs {base['model']} {fmt(base)}, {relative(metric, row['value'], base['value'])}"
                    f"{'; the CIs overlap' if overlap else '; the CIs do not overlap'})."
                )
    return out


def cost_conclusions(fits: pd.DataFrame, split_id: str) -> list[str]:
    here = fits[fits["split_id"] == split_id]
    if here.empty:
        return []
    seconds = here.set_index("model")["fit_seconds"]
    trad = seconds[seconds.index.isin(TRADITIONAL)]
    out = []
    for model in LANGUAGE:
        if model in seconds and len(trad):
            out.append(
                f"{model} took {seconds[model]:.1f} s to fit, against {trad.sum():.1f} s for all "
                f"{len(trad)} traditional models together ({seconds[model] / max(trad.sum(), 1e-9):.1f}×)."
            )
    return out


def ranking_k(results: pd.DataFrame) -> int | None:
    """The cut-off K of the results' ranking metrics (None when there are none)."""
    ks = results.loc[results["metric"] == "ndcg", "k"]
    return int(ks.iloc[0]) if len(ks) else None


def seed_summary(results: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over seeds of each protocol's headline values (segment ``all``).

    ``splits``: split_id -> protocol and seed. Returns protocol, model, metric, k, mean, std, seeds."""
    merged = results[results["segment"] == "all"].merge(splits[["split_id", "protocol", "seed"]], on="split_id")
    merged = merged[merged["metric"].isin(HEADLINE)]
    grouped = merged.groupby(["protocol", "model", "metric", "k"], as_index=False)["value"]
    out = grouped.agg(
        mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), seeds="count"
    )
    return out
