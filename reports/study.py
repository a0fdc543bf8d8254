"""The cross-dataset study's report (pure: DataFrames and dicts in, report blocks out; ``reports.render``
writes them as Markdown and HTML).

It follows the single report's rules: the verdict first; every claim a paired difference with its 95% CI
and Holm-corrected p from that dataset's own experiment; "better"/"worse" only where significant; segments
below the minimum size untested; each dataset's data-card warnings beside each of its verdicts; a dataset
that failed is reported, never silently dropped.

Pooling across datasets (``pooled_segments``): a difference in MSE or NDCG is on each dataset's own scale
(rating scales and catalogue sizes differ), so differences are pooled as *relative* differences (difference
over the reference model's value on that dataset), inverse-variance weighted (fixed effect; each dataset's
standard error from its bootstrap CI, half-width / 1.96, over the same reference value), one split per
protocol and dataset, only where at least two datasets have the segment tested. The count of datasets on
which the segment's verdict is better / worse / no difference is shown beside it, which needs no pooling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.evaluation.comparisons import (
    BEST_TRADITIONAL,
    BETTER,
    LOWER_IS_BETTER,
    SAME,
    SEGMENTED,
    TOO_FEW,
    WORSE,
)
from models.registry import FUSION, LANGUAGE, REGISTRY
from reports.conclusions import TASKS, json_field, metric_label, verdict_rows
from reports.render import forest

LM = LANGUAGE[0]
Z = 1.959963984540054


def dataset_verdicts(datasets: list[dict]) -> pd.DataFrame:
    """One row per dataset, split and task: the single report's verdict row with the dataset in front."""
    parts = []
    for d in _completed(datasets):
        rows = verdict_rows(d["differences"], d["fits"], d["splits"], d["card"])
        if not rows.empty:
            parts.append(rows.assign(dataset=d["name"]))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["dataset", *[c for c in out.columns if c != "dataset"]]]


def all_differences(datasets: list[dict]) -> pd.DataFrame:
    """Every dataset's paired differences, ``split_id`` prefixed with the dataset's name (for plots)."""
    parts = [
        d["differences"].assign(dataset=d["name"], split_id=d["name"] + " · " + d["differences"]["split_id"])
        for d in _completed(datasets)
        if not d["differences"].empty
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def conclusions(datasets: list[dict]) -> list[str]:
    """Where the LM (and the fusion) helps, counted over datasets × splits per task, in words; honest when
    nothing is significant."""
    diffs = all_differences(datasets)
    if diffs.empty:
        return ["No dataset produced paired differences: nothing can be concluded."]
    lines = []
    for task, metric in TASKS:
        here = diffs[(diffs["metric"] == metric) & (diffs["segment"] == "all") & (diffs["kind"] == BEST_TRADITIONAL)]
        for model, words in ((LM, "the fine-tuned LM"), (FUSION, "the fusion")):
            rows = here[here["model"] == model]
            if rows.empty:
                continue
            better = sorted(set(rows.loc[rows["verdict"] == BETTER, "split_id"]))
            worse = sorted(set(rows.loc[rows["verdict"] == WORSE, "split_id"]))
            n = len(rows)
            if not better and not worse:
                lines.append(
                    f"{task.capitalize()} ({metric.upper()}): {words} is not detectably different from the best "
                    f"traditional model on any of {n} dataset × split comparisons."
                )
                continue
            text = f"{task.capitalize()} ({metric.upper()}): {words} is significantly better than the best traditional model on {len(better)} of {n}"
            text += f" ({', '.join(better)})" if better else ""
            text += f", worse on {len(worse)}" + (f" ({', '.join(worse)})" if worse else "")
            text += f", not detectably different on {n - len(better) - len(worse)}."
            lines.append(text)
    headline = diffs[
        (diffs["model"] == LM)
        & (diffs["segment"] == "all")
        & (diffs["kind"] == BEST_TRADITIONAL)
        & diffs["metric"].isin([metric for _, metric in TASKS])  # the verdict's metrics, not every metric
    ]
    helped = sorted({s.split(" · ")[0] for s in headline.loc[headline["verdict"] == BETTER, "split_id"]})
    if helped:
        lines.insert(0, f"Bottom line: the fine-tuned LM helps detectably on {', '.join(helped)}.")
    else:
        lines.insert(
            0,
            "Bottom line: on no dataset does the fine-tuned LM beat the best traditional model detectably "
            f"({' or '.join(m.upper() for _, m in TASKS)}).",
        )
    failed = [d["name"] for d in datasets if d["status"] != "completed"]
    if failed:
        lines.append(f"Not compared (their experiment did not complete): {', '.join(failed)}.")
    return lines


def traits(datasets: list[dict]) -> pd.DataFrame:
    """The datasets' traits side by side, from their data cards."""
    rows = []
    for d in _completed(datasets):
        card = d["card"] or {}
        ratings = {float(k): v for k, v in (card.get("ratings") or {}).items()}
        meta = card.get("metadata_coverage") or {}
        cold = [
            s.get("ranking_candidates")
            for s in (card.get("splits") or {}).values()
            if s.get("protocol") == "cold_items"
        ]
        rows.append(
            {
                "dataset": d["name"],
                "ratings": card.get("interactions"),
                "users": card.get("users"),
                "items": card.get("items"),
                "density": _pct(card.get("density"), 3),
                "ratings per user (median)": (card.get("per_user") or {}).get("median"),
                "ratings per item (median)": (card.get("per_item") or {}).get("median"),
                "users with ≤ 3 ratings": _pct(card.get("users_with_at_most_3")),
                "review coverage": _pct(card.get("review_coverage")),
                "review words (median)": (card.get("review_words") or {}).get("median"),
                "metadata coverage (items)": _pct(meta.get("items")) if meta else "no metadata",
                "mean rating": round(card["rating_mean"], 2) if card.get("rating_mean") is not None else None,
                "rating skew": round(skewness(ratings), 2) if ratings else None,
                "cold-item candidates": cold[0] if cold else None,
                "data warnings": ", ".join(dict.fromkeys(w["code"] for w in card.get("warnings", []))) or "none",
            }
        )
    return pd.DataFrame(rows)


def skewness(histogram: dict[float, int]) -> float:
    """Sample skewness E[(r − μ)³] / σ³ of ratings given as {value: count} (negative: piled at the top)."""
    values = np.array(list(histogram), dtype=float)
    counts = np.array(list(histogram.values()), dtype=float)
    n = counts.sum()
    if n == 0:
        return float("nan")
    mean = (values * counts).sum() / n
    var = ((values - mean) ** 2 * counts).sum() / n
    return float(((values - mean) ** 3 * counts).sum() / n / var**1.5) if var > 0 else 0.0


def pooled_segments(datasets: list[dict]) -> pd.DataFrame:
    """The LM's and the fusion's gain over the best traditional model per segment, pooled across datasets
    as relative differences (see the module's docstring), with the count of per-dataset verdicts."""
    diffs = all_differences(datasets)
    if diffs.empty:
        return pd.DataFrame()
    seg = diffs[
        (diffs["kind"] == BEST_TRADITIONAL) & diffs["model"].isin([LM, FUSION]) & diffs["metric"].isin(SEGMENTED)
    ].copy()
    seg["protocol"] = seg["split_id"].str.split(" · ").str[1].str.rsplit("_s", n=1).str[0]
    # one split per protocol and dataset (the first seed), so that seeds do not count as datasets
    seg = seg.sort_values("split_id").drop_duplicates(["dataset", "protocol", "model", "metric", "k", "segment"])
    rows = []
    for (protocol, model, metric, k, segment), part in seg.groupby(["protocol", "model", "metric", "k", "segment"]):
        tested = part[part["verdict"] != TOO_FEW].dropna(subset=["ci_low", "ci_high"])
        tested = tested[tested["reference_value"].abs() > 0]
        relative = tested["diff"] / tested["reference_value"].abs()
        se = (tested["ci_high"] - tested["ci_low"]) / (2 * Z) / tested["reference_value"].abs()
        ok = se > 0
        relative, se = relative[ok], se[ok]
        pooled = ci = "not pooled (fewer than 2 datasets tested)"
        if len(relative) >= 2:
            w = 1 / se**2
            estimate, error = float((w * relative).sum() / w.sum()), float(np.sqrt(1 / w.sum()))
            pooled = f"{estimate:+.1%}"
            ci = f"[{estimate - Z * error:+.1%}, {estimate + Z * error:+.1%}]"
        counts = part["verdict"].value_counts()
        rows.append(
            {
                "protocol": protocol,
                "segment": segment,
                "metric": metric_label(metric, int(k)),
                "model": model,
                "datasets": part["dataset"].nunique(),
                "better / worse / no difference / too few": f"{counts.get(BETTER, 0)} / {counts.get(WORSE, 0)} / "
                f"{counts.get(SAME, 0)} / {counts.get(TOO_FEW, 0)}",
                "pooled relative difference": pooled,
                "95% CI": ci,
                "better is": "lower" if metric in LOWER_IS_BETTER else "higher",
            }
        )
    return pd.DataFrame(rows)


def cost(datasets: list[dict]) -> pd.DataFrame:
    """Mean fit seconds and peak memory (GiB) per model and dataset."""
    rows = []
    for d in _completed(datasets):
        fits = d["fits"]
        if fits.empty:
            continue
        peaks = [json_field(e).get("peak_memory_gib") for e in fits.get("extras", [None] * len(fits))]
        frame = fits.assign(peak=pd.to_numeric(pd.Series(peaks, index=fits.index), errors="coerce"))
        for model, part in frame.groupby("model", sort=False):
            rows.append(
                {
                    "dataset": d["name"],
                    "model": model,
                    "fit s (mean per split)": round(float(part["fit_seconds"].mean()), 1),
                    "peak memory GiB": round(float(part["peak"].max()), 2) if part["peak"].notna().any() else None,
                }
            )
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    order = {m: n for n, m in enumerate(REGISTRY)}
    return out.sort_values(["dataset", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


def study_blocks(datasets: list[dict], meta: dict) -> list:
    """The study report's blocks. ``datasets``: per dataset ``name``, ``status`` ("completed" or "failed"),
    ``error`` (failed), and, completed, ``run_id``, ``differences``, ``fits``, ``splits``, ``card``,
    ``seconds``; ``meta``: study id, created."""
    names = [d["name"] for d in datasets]
    blocks: list = [("h1", f"reclab study — {len(datasets)} dataset(s): {', '.join(names)}")]
    blocks.append(
        (
            "p",
            f"Study {meta.get('study_id', '?')}, {meta.get('created', '')}. Where, and for whom, does the fine-tuned "
            "LM help? Each dataset ran the full experiment on its own (its splits, its models tuned on its "
            "validation); each claim is a paired difference over that dataset's test users, with a 95% bootstrap "
            'CI and Holm-corrected tests; "better" and "worse" only where significant.',
        )
    )
    warn = [
        f"{d['name']}: the experiment did not complete: {d.get('error', '?')}"
        for d in datasets
        if d["status"] != "completed"
    ]
    for d in _completed(datasets):
        warn += [f"{d['name']}: data card: {w['message']}" for w in (d["card"] or {}).get("warnings", [])]
    if warn:
        blocks.append(("warn", warn))
    blocks += [("h2", "Verdict"), ("ul", conclusions(datasets))]
    verdicts = dataset_verdicts(datasets)
    if not verdicts.empty:
        blocks.append(("table", verdicts.drop(columns=["answer"])))
        diffs = all_differences(datasets)
        for metric in ("mse", "ndcg"):
            figure = forest(diffs, metric)
            if figure:
                caption = (
                    f"{metric.upper()}: LM and fusion minus the best traditional model, per dataset and split (95% CI)"
                )
                blocks.append(("figure", f"study_{metric}", caption, figure))
    blocks += [
        ("h2", "Where: the datasets' traits"),
        ("table", traits(datasets)),
        ("h2", "For whom: segments across datasets"),
        (
            "p",
            "The LM's and the fusion's difference from each dataset's best traditional model per segment "
            "(user activity, item popularity), pooled across datasets as relative differences, inverse-variance "
            "weighted (fixed effect), one split per protocol and dataset; a segment tested on fewer than two "
            "datasets is not pooled. The verdict counts need no pooling.",
        ),
        ("table", pooled_segments(datasets)),
        ("h2", "Cost"),
        ("table", cost(datasets)),
    ]
    return blocks


def _completed(datasets: list[dict]) -> list[dict]:
    return [d for d in datasets if d["status"] == "completed"]


def _pct(value, digits: int = 0):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return f"{100 * value:.{digits}f}%"
