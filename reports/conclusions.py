"""The experiment's answer, generated from the evaluation tables (never hand-written).

Every claim rests on a row of ``eval_differences`` (a paired difference with its 95% bootstrap CI and
Holm-corrected tests, see :mod:`models.evaluation.comparisons`) and quotes it: "better"/"worse" only where
that row's verdict says so, "no detectable difference (difference [CI])" otherwise, the two tests'
disagreement in words, and the data card's warnings next to every verdict they affect.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from models import registry
from models.evaluation.comparisons import (
    BEST_TRADITIONAL,
    BETTER,
    COMPONENT,
    LOWER_IS_BETTER,
    SAME,
    TOO_FEW,
    WORSE,
    ranks_nothing,
)

LM = registry.LANGUAGE[0] if registry.LANGUAGE else None  # the fine-tuned transformer
FUSION = registry.FUSION
# the one metric that answers each task in the verdict (the appendix has the others)
TASKS = (("rating", "mse"), ("ranking", "ndcg"))
HEADLINE = ("rmse", "mse", "mae", "ndcg", "recall", "hit_rate", "map", "mrr", "auc")


def metric_label(metric: str, k: int) -> str:
    return f"{metric.upper()}@{k}" if k and metric != "auc" else metric.upper()


def number(value: float, signed: bool = False) -> str:
    """4 significant decimals; never "-0" (a difference that rounds to zero prints as 0)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if round(float(value), 4) == 0:
        return "0.0000" if not signed else "±0.0000"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def p_value(p: float) -> str:
    return "n/a" if p is None or not np.isfinite(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def p_text(p: float) -> str:
    """'p = 0.03' or 'p < 0.001'."""
    shown = p_value(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def fmt(row: pd.Series) -> str:
    """'value [low, high]' of an ``eval_results`` row."""
    return f"{number(row['value'])} [{number(row['ci_low'])}, {number(row['ci_high'])}]"


def difference(row: pd.Series) -> str:
    """'+0.0123 [+0.0040, +0.0200], p = 0.003' of an ``eval_differences`` row (Holm-corrected t-test)."""
    if row["verdict"] == TOO_FEW:
        return f"{number(row['diff'], True)} (only {int(row['n_users'])} users: not judged)"
    return (
        f"{number(row['diff'], True)} [{number(row['ci_low'], True)}, {number(row['ci_high'], True)}], "
        f"{p_text(row['t_p_holm'])}"
    )


def json_field(value) -> dict:
    """A JSON column of ``model_fits`` (``params``, ``extras``) as a dict, whether DuckDB gave text or a dict."""
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return value if isinstance(value, dict) else {}


def fusion_alone(fits: pd.DataFrame, split_id: str) -> dict[str, str | None]:
    """Task -> the one component the fusion reduced to on this split (None when it blends several)."""
    row = fits[(fits["split_id"] == split_id) & (fits["model"] == FUSION)]
    if row.empty:
        return {"rating": None, "ranking": None}
    params = json_field(row.iloc[0]["params"])
    single = (params.get("blender_") or {}).get("single")
    if single is None:
        rating = {n: w for n, w in (params.get("rating_weights_") or {}).get("global", {}).items() if n != "intercept"}
        used = [n for n, w in rating.items() if abs(w) > 1e-9]
        single = used[0] if len(used) == 1 and len(rating) > 1 else None
    ranking = params.get("ranking_weights_") or {}
    used = [n for n, w in ranking.items() if abs(w) > 1e-9]
    return {"rating": single, "ranking": used[0] if len(used) == 1 and len(ranking) > 1 else None}


def no_ranking(fits: pd.DataFrame, split_id: str) -> list[str]:
    """Models that scored every candidate the same on this split (their ranking figures are chance)."""
    here = fits[fits["split_id"] == split_id]
    if "extras" not in here:
        return []
    return sorted(m for m, e in zip(here["model"], here["extras"], strict=True) if ranks_nothing(json_field(e)))


def split_warnings(card: dict | None, split_id: str) -> list[dict]:
    return [w for w in (card or {}).get("warnings", []) if split_id in w["splits"]]


def _row(diffs, split_id, metric, model, reference=None, kind=BEST_TRADITIONAL, segment="all"):
    mask = (
        (diffs["split_id"] == split_id)
        & (diffs["metric"] == metric)
        & (diffs["model"] == model)
        & (diffs["kind"] == kind)
        & (diffs["segment"] == segment)
    )
    if reference is not None:
        mask &= diffs["reference"] == reference
    rows = diffs[mask]
    return None if rows.empty else rows.iloc[0]


def claim(row: pd.Series, reference_words: str | None = None) -> str:
    """One comparison in words: the verdict, the difference with its CI and p, and the tests' disagreement."""
    ref = reference_words or row["reference"]
    label = metric_label(row["metric"], int(row["k"]))
    if row["verdict"] in (BETTER, WORSE):
        text = f"{row['model']} is {row['verdict']} than {ref} ({label} {difference(row)})"
    elif row["verdict"] == TOO_FEW:
        text = f"{row['model']} vs {ref}: {difference(row)}"
    else:
        text = f"{row['model']}: no detectable difference from {ref} ({label} {difference(row)})"
    if bool(row["tests_disagree"]):
        text += "; " + disagreement(row)
    return text


def disagreement(row: pd.Series) -> str:
    """When the t-test (the mean) and the Wilcoxon test (per-user ranks: the typical user) disagree, say how."""
    lower = row["metric"] in LOWER_IS_BETTER
    mean_improves = (row["diff"] < 0) if lower else (row["diff"] > 0)
    mean_significant = row["verdict"] in (BETTER, WORSE)
    shares = (
        f"{row['share_better']:.0%} of users are served better, {row['share_worse']:.0%} worse"
        + (", the rest equally" if row["share_better"] + row["share_worse"] < 0.995 else "")
        + f"; median per-user difference {number(row['median_user_diff'], True)}; "
        f"Wilcoxon {p_text(row['wilcoxon_p_holm'])}"
    )
    if not mean_significant:
        return f"the means do not differ detectably, but per-user ranks do ({shares})"
    typical_improves = row["share_better"] > row["share_worse"]
    if typical_improves != mean_improves:
        return (
            f"the tests disagree: the mean {'improves' if mean_improves else 'worsens'}, but most users are served "
            f"{'better' if typical_improves else 'worse'} ({shares})"
        )
    return f"the mean {'improves' if mean_improves else 'worsens'} but the typical user does not detectably ({shares})"


def verdict_rows(
    diffs: pd.DataFrame, fits: pd.DataFrame, splits: pd.DataFrame, card: dict | None = None
) -> pd.DataFrame:
    """One row per split and task: the best traditional model, the LM and the fusion against it, the answer
    in one sentence, and the data card's warnings for that split."""
    protocol = splits.set_index("split_id")["protocol"].to_dict() if not splits.empty else {}
    rows = []
    for split_id in list(dict.fromkeys(diffs["split_id"])):
        warnings = split_warnings(card, split_id)
        alone = fusion_alone(fits, split_id)
        for task, metric in TASKS:
            here = diffs[(diffs["split_id"] == split_id) & (diffs["metric"] == metric) & (diffs["segment"] == "all")]
            best = here[here["kind"] == BEST_TRADITIONAL]
            if best.empty:
                continue
            reference = best.iloc[0]["reference"]
            k = int(best.iloc[0]["k"])
            lm, fusion = _row(diffs, split_id, metric, LM), _row(diffs, split_id, metric, FUSION)
            rows.append(
                {
                    "split": split_id,
                    "protocol": protocol.get(split_id, "?"),
                    "task": f"{task} ({metric_label(metric, k)})",
                    "best traditional": f"{reference} {number(best.iloc[0]['reference_value'])}",
                    "LM − best": _cell(lm),
                    "fusion − best": _cell(fusion),
                    "answer": answer(diffs, split_id, task, metric, reference, lm, fusion, alone[task]),
                    "data warnings": "; ".join(dict.fromkeys(w["code"] for w in warnings)) or "none",
                }
            )
    return pd.DataFrame(rows)


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "not trained"
    return f"{number(row['value'])}: {difference(row)} ({row['verdict']})"


def answer(diffs, split_id, task, metric, reference, lm, fusion, alone) -> str:
    """The split's answer for one task in one or two sentences."""
    parts = []
    if fusion is not None:
        text = claim(fusion, f"the best traditional model {reference}")
        if alone:
            text += f" (here the fusion is {alone} alone: blending did not pay on validation)"
        parts.append(text)
        components = diffs[
            (diffs["split_id"] == split_id)
            & (diffs["metric"] == metric)
            & (diffs["segment"] == "all")
            & (diffs["model"] == FUSION)
            & (diffs["kind"] == COMPONENT)
        ]
        if not components.empty:
            same_everywhere = (components["share_better"] == 0) & (components["share_worse"] == 0)
            identical = components[same_everywhere]["reference"].tolist()
            rest = components[~same_everywhere]
            bits = []
            for verdict, words in (
                (BETTER, "is better than"),
                (SAME, "shows no detectable difference from"),
                (WORSE, "is worse than"),
            ):
                names = rest[rest["verdict"] == verdict]["reference"].tolist()
                if names:
                    bits.append(f"{words} {', '.join(names)}")
            if identical:
                bits.append(f"is identical to {', '.join(identical)} for every user (effectively that component alone)")
            parts.append("Against its components, the fusion " + "; ".join(bits))
    if lm is not None:
        parts.append(claim(lm))
    return ". ".join(parts) + "."


def overall_answer(verdicts: pd.DataFrame, diffs: pd.DataFrame) -> list[str]:
    """The answer across splits: a bottom line, then one line per task and contender saying on how many
    splits it is better / worse / not detectably different from the best traditional model."""
    lines, tally = [], {}
    for task, metric in TASKS:
        here = diffs[(diffs["metric"] == metric) & (diffs["segment"] == "all") & (diffs["kind"] == BEST_TRADITIONAL)]
        for model, words in ((FUSION, "the fusion"), (LM, "the fine-tuned LM alone")):
            rows = here[here["model"] == model]
            if rows.empty:
                continue
            counts = rows["verdict"].value_counts()
            n = len(rows)
            better = [s for s, v in zip(rows["split_id"], rows["verdict"], strict=True) if v == BETTER]
            worse = [s for s, v in zip(rows["split_id"], rows["verdict"], strict=True) if v == WORSE]
            total = tally.setdefault(words, [0, 0, 0])
            total[0], total[1], total[2] = total[0] + len(better), total[1] + len(worse), total[2] + n
            lines.append(
                f"{task.capitalize()} ({metric.upper()}): {words} is significantly better than the best traditional "
                f"model on {counts.get(BETTER, 0)} of {n} splits"
                + (f" ({', '.join(better)})" if better else "")
                + f", worse on {counts.get(WORSE, 0)}"
                + (f" ({', '.join(worse)})" if worse else "")
                + f", with no detectable difference on {counts.get(SAME, 0) + counts.get(TOO_FEW, 0)}."
            )
    if tally:
        parts = [
            f"{words} beats the best traditional model in {b} of {n} split × task comparisons and loses in {w}"
            for words, (b, w, n) in tally.items()
        ]
        lines.insert(0, "Bottom line: " + "; ".join(parts) + ".")
    return lines


def for_whom(diffs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments where the LM or the fusion differs significantly from the best traditional model,
    segments too small to judge)."""
    seg = diffs[(diffs["segment"] != "all") & (diffs["kind"] == BEST_TRADITIONAL) & diffs["model"].isin([LM, FUSION])]
    found = seg[seg["verdict"].isin([BETTER, WORSE])]
    table = pd.DataFrame(
        {
            "split": found["split_id"],
            "segment": found["segment"],
            "metric": [metric_label(m, int(k)) for m, k in zip(found["metric"], found["k"], strict=True)],
            "model": found["model"],
            "vs": found["reference"],
            "users": found["n_users"].astype(int),
            "difference [95% CI], Holm p": [difference(r) for _, r in found.iterrows()],
            "verdict": found["verdict"],
        }
    )
    small = seg[seg["verdict"] == TOO_FEW][["split_id", "segment", "n_users"]].drop_duplicates()
    return table.reset_index(drop=True), small.reset_index(drop=True)


def cost_rows(fits: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean fit and evaluation seconds over the run's splits, the fit time relative to all
    traditional models together, and how it was trained where that matters (the LM's fine-tuning recipe)."""
    if fits.empty:
        return pd.DataFrame()
    mean = fits.groupby("model")[["fit_seconds", "eval_seconds"]].mean()
    recipes = {}
    if "params" in fits:
        for model, params in zip(fits["model"], fits["params"], strict=True):
            recipe = (json_field(params).get("metrics_") or {}).get("recipe")
            if recipe:
                recipes.setdefault(model, recipe)
    traditional = mean.loc[mean.index.isin(registry.TRADITIONAL), "fit_seconds"].sum()
    order = [m for m in registry.REGISTRY if m in mean.index] + [m for m in mean.index if m not in registry.REGISTRY]
    mean = mean.reindex(order)
    return pd.DataFrame(
        {
            "model": mean.index,
            "fit s (mean per split)": mean["fit_seconds"].round(1).to_numpy(),
            "evaluation s": mean["eval_seconds"].round(1).to_numpy(),
            "× all traditional models": (mean["fit_seconds"] / traditional).round(2).to_numpy()
            if traditional > 0
            else np.nan,
            "how": [recipes.get(m, "") for m in mean.index],
        }
    )


def seed_summary(results: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over seeds of each protocol's headline values (segment ``all``).

    ``splits``: split_id -> protocol and seed. Returns protocol, model, metric, k, mean, std, seeds."""
    merged = results[results["segment"] == "all"].merge(splits[["split_id", "protocol", "seed"]], on="split_id")
    merged = merged[merged["metric"].isin(HEADLINE)]
    grouped = merged.groupby(["protocol", "model", "metric", "k"], as_index=False)["value"]
    return grouped.agg(
        mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), seeds="count"
    )
